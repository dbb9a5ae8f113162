package agent

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/peercdn/peercdn/peerwire"
)

// A seed fetches a segment from the CDN for its neighbourhood, which then
// takes it from the seed and from each other. A viewer that cannot pass it
// on should not be one, and tells its peers so (peerwire status,
// StatusNoSeed), so that they elect the seed among the others:
//
//   - a consume-only viewer uploads nothing: its neighbours waited for a
//     copy that never came, until the CDN reserve;
//   - a viewer whose uplink is measured below the stream's bitrate sends
//     one neighbour a copy slower than it plays: each neighbour's transfer
//     was projected late and completed from the CDN (mixed x 50: 238
//     transfers completed from the CDN in a run; 159 when the viewers
//     below the bitrate were told not to seed).
type seeding struct {
	// bitrate is bytes per second of media, a moving average over loads
	// whose Request gave a Duration; 0 until one did.
	bitrate atomic.Int64
	// slowUplink: the uplink was last measured below the bitrate.
	slowUplink atomic.Bool
	// told is the status last sent to peers (true: StatusNoSeed); mu
	// orders its changes with their broadcasts.
	mu   sync.Mutex
	told bool
}

// seedAgain is how far above the bitrate an uplink measured slow must
// measure before its viewer seeds again: a link near the bitrate would
// otherwise flip its status with every sample.
const seedAgain = 1.25

// seeds reports whether this viewer seeds.
func (a *Agent) seeds() bool { return !a.consumeOnly() && !a.seeding.slowUplink.Load() }

// noteBitrate folds a loaded segment of n bytes and d of media into the
// bitrate.
func (a *Agent) noteBitrate(n int, d time.Duration) {
	if n <= 0 || d <= 0 {
		return
	}
	foldInto(&a.seeding.bitrate, int64(float64(n)/d.Seconds()))
}

// reviewSeeding compares the uplink's measured rate with the bitrate and
// tells every peer when this viewer starts or stops seeding.
func (a *Agent) reviewSeeding() {
	if up, br := a.uplink.measured(), float64(a.seeding.bitrate.Load()); up > 0 && br > 0 {
		if slow := a.seeding.slowUplink.Load(); !slow && up < br {
			a.seeding.slowUplink.Store(true)
			a.log.Debug("uplink below the bitrate: not seeding", "uplinkBps", int64(up), "bitrateBps", int64(br))
		} else if slow && up >= seedAgain*br {
			a.seeding.slowUplink.Store(false)
		}
	}
	a.seeding.mu.Lock()
	defer a.seeding.mu.Unlock()
	noSeed := !a.seeds()
	if a.seeding.told == noSeed {
		return
	}
	a.seeding.told = noSeed
	msg := statusMessage(noSeed)
	for _, sw := range a.swarmList() {
		sw.broadcast(msg)
	}
}

// statusMessage is the status a viewer that seeds, or not, tells its peers.
func statusMessage(noSeed bool) []byte {
	var flags uint8
	if noSeed {
		flags |= peerwire.StatusNoSeed
	}
	return peerwire.Status(flags)
}
