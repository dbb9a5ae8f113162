package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/peercdn/peercdn/tracker"
)

// BenchmarkTransfer moves one segment between two pion peers over loopback,
// through the peerwire protocol and the scheduler (16 KiB chunks, paced on
// the channel's buffered amount).
func BenchmarkTransfer(b *testing.B) {
	tr := startTrackerWith(b, func(c *tracker.Config) { c.Integrity = tracker.IntegrityOff }) // the seeder stores segments the tracker never saw
	// A loss on loopback (UDP buffers overflow at these rates) costs an SCTP
	// retransmission timeout of about a second: wait it out rather than
	// falling back to the (absent) CDN.
	seeder := startAgent(b, tr, nil)
	leecher := startAgent(b, tr, func(c *Config) { c.P2PStallTimeout = 5 * time.Second })
	waitPeers(b, 1, seeder, leecher)
	for _, size := range []int{256 << 10, 1 << 20, 4 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			seq := uint64(1000 + size)
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i)
			}
			seeder.store(segKey{testSwarm, seq}, data)
			waitHolds(b, leecher, Request{Swarm: testSwarm, Seq: seq, URL: "http://127.0.0.1:1/unused"})
			ctx := context.Background()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				r, err := leecher.Load(ctx, Request{Swarm: testSwarm, Seq: seq, URL: "http://127.0.0.1:1/unused", Deadline: time.Now().Add(time.Minute)})
				if err != nil || r.Source != SourceP2P || len(r.Data) != size {
					b.Fatalf("source %v, %d bytes, err %v", r.Source, len(r.Data), err)
				}
				leecher.cache.evict(testSwarm, []uint64{seq})
			}
		})
	}
}
