package agent

import (
	"context"
	"errors"
	"sync"
)

// Cut-through: a viewer receiving a segment from a peer passes its bytes on
// to the peers that ask for it as they arrive, not after the last byte. On
// cable links (0.9 Mbit/s stream, 50 viewers) a load from peers waited
// 0.9 s on average for some neighbour to hold the segment, then 0.8 s for
// the transfer: copies spread in hops of whole-segment transfers. Passing
// bytes on while they arrive makes a hop cost a chunk, not a segment.
//
// A viewer passing bytes on has not checked them yet: the segment's hash
// covers the whole. So the last chunk is sent only from the cache, which
// holds checked segments alone; a passer whose upstream sent bad bytes
// answers absent instead (the requester discards what it got, blaming
// nobody), and a requester that completes a segment got every byte of it
// from a viewer that checked it.

// inflight is a segment this agent is receiving from a peer.
type inflight struct {
	from    *remote       // the upstream peer
	started chan struct{} // closed once t is set
	t       *transfer
	settled chan struct{} // closed when the load ends: stored in the cache, or not
}

// errInflightEnded: the transfer passed on ended; what follows comes from
// the cache, if it was stored, or not at all.
var errInflightEnded = errors.New("the segment passed on is no longer arriving")

// receive registers k as arriving from r. The caller ends it with
// a.endInflight once the segment is stored or given up.
func (a *Agent) receive(k segKey, r *remote) *inflight {
	in := &inflight{from: r, started: make(chan struct{}), settled: make(chan struct{})}
	a.inflightMu.Lock()
	if a.inflights == nil {
		a.inflights = map[segKey]*inflight{}
	}
	a.inflights[k] = in
	a.inflightMu.Unlock()
	return in
}

// endInflight settles in; call it after storing a good segment, so that
// uploads waiting on in find it in the cache.
func (a *Agent) endInflight(k segKey, in *inflight) {
	a.inflightMu.Lock()
	if a.inflights[k] == in {
		delete(a.inflights, k)
	}
	a.inflightMu.Unlock()
	close(in.settled)
}

// arriving returns the transfer of k this agent is receiving, if any.
func (a *Agent) arriving(k segKey) *inflight {
	a.inflightMu.Lock()
	defer a.inflightMu.Unlock()
	return a.inflights[k]
}

// attach is called by remote.fetch once the transfer exists.
func (in *inflight) attach(t *transfer) {
	in.t = t
	close(in.started)
}

// total is the segment's size once its first chunk arrived, else 0.
func (in *inflight) total() int {
	select {
	case <-in.started:
	default:
		return 0
	}
	in.from.mu.Lock()
	defer in.from.mu.Unlock()
	return in.t.total
}

// chunk waits until bytes [off, off+n) have arrived, n at most max, and
// returns them with the segment's size. It never returns the segment's
// last byte (see above): errInflightEnded then, once the transfer ended.
func (in *inflight) chunk(ctx context.Context, off, max int, gone <-chan struct{}) ([]byte, int, error) {
	for {
		wait := in.started // until the transfer exists; then its next chunk
		select {
		case <-in.started:
			r, t := in.from, in.t
			r.mu.Lock()
			if end := min(off+max, t.total); t.total > 0 && end < t.total && end <= t.got {
				// t.buf was made with the segment's capacity: appends
				// never move the bytes already received.
				b, total := t.buf[off:end:end], t.total
				r.mu.Unlock()
				return b, total, nil
			}
			if t.more == nil {
				t.more = make(chan struct{})
			}
			wait = t.more
			r.mu.Unlock()
		default:
		}
		select {
		case <-wait:
		case <-in.settled:
			return nil, 0, errInflightEnded
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-gone:
			return nil, 0, errPeerGone
		}
	}
}

// inflightState is the agent's registry of segments arriving from peers.
type inflightState struct {
	inflightMu sync.Mutex
	inflights  map[segKey]*inflight
}
