package agent

import (
	"sync"
	"sync/atomic"
	"time"
)

// uplink decides which peer requests this viewer takes on, by what its
// link is measured to carry, and in what order they are sent. A data
// channel takes a whole segment into its buffer at once, so without it a
// holder said yes to every viewer that asked: on a cable or DSL uplink the
// first holder of a live segment had dozens of transfers sharing a few
// Mbit/s, each projected late and abandoned for the CDN by its requester,
// while other viewers that got the segment meanwhile sat idle. Refused
// requests (absent) send the requester to another holder, or to wait for
// one.
//
// The requests taken on are sent activeUploads at a time, in the order
// they came: a copy sent alone arrives in a fraction of the time, and its
// receiver can pass it on meanwhile. Sent side by side, every copy arrived
// only when the last did (cable x 50 at 0.9 Mbit/s: offload 0.59-0.62 side
// by side, 0.75 in turns).
type uplink struct {
	mu sync.Mutex
	// pending is bytes of accepted uploads not yet handed to a channel.
	pending int64
	// rate is bytes/s the link drained while it had a backlog, a moving
	// average; 0 until measured.
	rate float64
	// The last sample: when, bytes that had left the buffers by then, and
	// whether there was a backlog.
	at      time.Time
	drained int64
	backlog bool
	// slots holds a token per upload sending now; made on first use.
	slots chan struct{}
}

// activeUploads is how many uploads send at once. Two, not one: one
// receiver on a lossy path (its SCTP association slow to grow its window)
// would leave the uplink idle.
const activeUploads = 2

// turns is the semaphore an upload holds while it sends. Go queues the
// goroutines blocked on a channel in order, so turns come first come,
// first served.
func (u *uplink) turns() chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.slots == nil {
		u.slots = make(chan struct{}, activeUploads)
	}
	return u.slots
}

// uploadQueueWait is how long an accepted request may wait for its first
// byte: the backlog ahead of it at the measured rate. Requesters wait that
// long on top of P2PStallTimeout for a first byte (remote.fetch).
const uploadQueueWait = time.Second

// uplinkSampleEvery spaces the rate samples: shorter is noise from SCTP's
// bursts.
const uplinkSampleEvery = 250 * time.Millisecond

// admit reports whether a request for n more bytes is taken on; measure
// gives the bytes in the channels' buffers now and those handed to them so
// far. An idle link takes any request; a busy one, those whose turn comes
// within uploadQueueWait at its measured rate (with no rate measured yet,
// one request waits behind the others at most).
func (u *uplink) admit(n int, now time.Time, measure func() (buffered, sent int64)) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	buffered, sent := measure()
	u.sampleLocked(buffered, sent, now)
	backlog := u.pending + buffered
	ok := backlog == 0
	switch {
	case ok:
	case u.rate > 0:
		ok = time.Duration(float64(backlog)/u.rate*float64(time.Second)) <= uploadQueueWait
	default:
		ok = backlog <= int64(n)
	}
	if ok {
		u.pending += int64(n)
	}
	return ok
}

// handed moves n bytes of accepted uploads into a channel's buffer.
func (u *uplink) handed(n int) {
	u.mu.Lock()
	u.pending = max(0, u.pending-int64(n))
	u.mu.Unlock()
}

// sample folds the link's progress into the rate, at most every
// uplinkSampleEvery (measure runs only then), and reports whether it did;
// the uploads call it as they go.
func (u *uplink) sample(now time.Time, measure func() (buffered, sent int64)) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.due(now) {
		return false
	}
	buffered, sent := measure()
	u.sampleLocked(buffered, sent, now)
	return true
}

// measured is the rate the link drained at with a backlog, bytes/s; 0
// until measured.
func (u *uplink) measured() float64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rate
}

func (u *uplink) due(now time.Time) bool {
	return u.at.IsZero() || now.Sub(u.at) >= uplinkSampleEvery
}

func (u *uplink) sampleLocked(buffered, sent int64, now time.Time) {
	if !u.due(now) {
		return
	}
	drained, backlog := sent-buffered, u.pending+buffered > 0
	// Only an interval with a backlog at both ends measures the link: an
	// idle link drains as little as it is given.
	if u.backlog && backlog {
		if r := float64(drained-u.drained) / now.Sub(u.at).Seconds(); r > 0 {
			u.rate = ewma(u.rate, r)
		}
	}
	u.at, u.drained, u.backlog = now, drained, backlog
}

// foldInto is ewma for an average shared between goroutines.
func foldInto(v *atomic.Int64, x int64) {
	if old := v.Load(); old == 0 {
		v.Store(x)
	} else {
		v.Store((7*old + 3*x) / 10)
	}
}

// ewma folds x into a moving average (0: none yet), weighing the past 0.7.
func ewma(avg, x float64) float64 {
	if avg == 0 {
		return x
	}
	return 0.7*avg + 0.3*x
}

// uplinkState is what uplink measures: the bytes every peer channel holds
// unsent or unacknowledged, and the bytes handed to channels so far.
func (a *Agent) uplinkState() (buffered, sent int64) {
	return a.uploadBuffered(), a.stats.up.Load()
}

func (a *Agent) uploadBuffered() int64 {
	var n int64
	for _, sw := range a.swarmList() {
		for _, r := range sw.connected() { // a connection is one swarm's
			n += int64(r.dc.BufferedAmount())
		}
	}
	return n
}
