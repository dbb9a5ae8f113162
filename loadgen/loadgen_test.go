package loadgen

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/peercdn/peercdn/internal/trackertest"
	"github.com/peercdn/peercdn/tracker"
)

// startTracker serves a real tracker on loopback.
func startTracker(t *testing.T, mutate func(*tracker.Config)) string {
	t.Helper()
	return strings.TrimSuffix(trackertest.Start(t, mutate, nil).WS(), "/ws")
}

// Each protocol and mode against a real tracker: every connection opens,
// offers and answers flow, nothing is lost, the percentiles are measured.
func TestRunAgainstTracker(t *testing.T) {
	base := startTracker(t, func(c *tracker.Config) {
		// The compat flood is not what viewers do: let it through.
		c.MessagesPerSecond, c.MessageBurst = 1e6, 1e6
		c.IPMessagesPerSecond, c.IPMessageBurst = 1e7, 1e7
		c.MaxSwarmsPerConn, c.MaxPendingOffers = 1024, 10000
		// Nor are readers starved of CPU (the race detector, other
		// packages' tests): under the default queue the tracker closed a
		// few as slow consumers (1 run in 8).
		c.SendQueue = 10000
	})
	for _, tc := range []struct{ protocol, mode, path string }{
		{WebTorrent, Realistic, "/announce"},
		{WebTorrent, Compat, "/announce"},
		{Native, Realistic, "/ws"},
		{Native, Compat, "/ws"},
	} {
		t.Run(tc.protocol+"-"+tc.mode, func(t *testing.T) {
			r, err := Run(context.Background(), Config{URL: base + tc.path, Protocol: tc.protocol, Mode: tc.mode,
				Conns: 40, Storm: 500 * time.Millisecond, Duration: time.Second, Hashes: 3, PerSource: 8}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.Opened != 40 || r.Failed != 0 || r.Lost != 0 {
				t.Fatalf("opened %d failed %d lost %d", r.Opened, r.Failed, r.Lost)
			}
			if r.OffersReceived == 0 || r.AnswersReceived == 0 {
				t.Fatalf("no exchange: %+v", r)
			}
			if r.HandshakeP99Ms <= 0 || r.P99Ms <= 0 {
				t.Fatalf("percentiles not measured: handshake %v, p99 %v", r.HandshakeP99Ms, r.P99Ms)
			}
			if tc.mode == Realistic && r.Dropped != 0 {
				t.Fatalf("%d dropped: %+v", r.Dropped, r)
			}
			if tc.mode == Compat && r.ResponsesPerSec <= 0 {
				t.Fatalf("no responses in the window: %+v", r)
			}
		})
	}
}
