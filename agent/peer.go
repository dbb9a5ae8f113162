package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/peercdn/peercdn/peerwire"
)

// Flow control for uploads: a responder stops writing while the channel
// holds more than highWater unsent bytes and resumes below lowWater.
// Small, because what is in the channel is sent even after the requester
// cancels: with 1 MiB a whole segment went in at once, and on cable x 50
// (0.9 Mbit/s stream) cancelled transfers went on using the uplinks they
// had been cancelled for (216 MB of P2P bytes wasted). 128 KiB still
// carries 7 Mbit/s per channel at 150 ms round trips (pion counts bytes
// in flight until acknowledged).
const (
	highWater = 128 << 10
	lowWater  = 32 << 10
	// maxUploadsPerPeer bounds concurrent uploads one peer may ask for;
	// more requests get absent.
	maxUploadsPerPeer = 8
	// maxFailures drops a peer after this many failed transfers.
	maxFailures = 3
)

// Peer errors.
var (
	errAbsent  = errors.New("peer does not hold the segment")
	errStalled = errors.New("peer stalled")
	// errSlow ends a transfer that is sending, but too slowly for the
	// load's reserve point, for a holder measured faster: the peer is
	// honest, only slow, so it is not counted a failure.
	errSlow = errors.New("peer too slow; another holder is faster")
	// errLate ends a transfer that was sending but could not finish by
	// the load's reserve point at its rate: the requester's time ran out,
	// which a slow CDN (a large reserve) or a starved CPU causes as much
	// as the peer. Not a failure either: its rate is measured instead.
	// Counted as failures, they got peers dropped and dialled again, and
	// the handshakes starved the simulator further (fiber x 200).
	errLate      = errors.New("peer could not finish before the reserve point")
	errPeerGone  = errors.New("peer connection closed")
	errProtocol  = errors.New("peer broke the segment protocol")
	errCancelled = errors.New("transfer cancelled")
)

// remote is one connected (or connecting) peer in one swarm.
type remote struct {
	a       *Agent
	sw      *swarm
	id      string // the tracker's peer id
	offerID string
	// outgoing: this agent made the offer (swarm.dial); its settling lets
	// the next suggested peer be dialled (DialsAtOnce).
	outgoing bool
	pc       peerConn
	dc       dataChannel

	// gathered is closed when ICE gathering ends; described is set (mu)
	// once this side's offer or answer is about to go out with the
	// candidates gathered by then: later ones trickle (candidate.go).
	gathered   chan struct{}
	gatherOnce sync.Once
	described  bool

	opened  chan struct{} // closed when the data channel opens
	closed  chan struct{} // closed when the peer is gone
	gone    atomic.Bool   // the connection's state went to failed or closed under it
	why     atomic.Value  // string: why this agent closed it (closeFor), for EventPeerGone
	bufLow  chan struct{} // signalled when the send buffer drains
	closeMu sync.Once

	mu          sync.Mutex
	have        map[uint64]uint64 // segment -> when announced (haveN then)
	haveN       uint64
	loading     map[uint64]time.Time // when each was announced
	nextID      uint32
	downloads   map[uint32]*transfer
	uploads     map[uint32]context.CancelFunc
	remoteSet   bool
	candidates  []string // arrived before the remote description
	throughput  float64  // bytes/s, moving average of finished transfers
	failures    int
	isConnected bool
	noSeed      bool // its status says it does not seed (seeding.go)
	// openedAt is when the channel opened; heard, that the peer's first
	// word (its have list, or a status) has arrived since (firstWordWait).
	openedAt time.Time
	heard    bool

	// limit throttles the messages a peer sends unasked (everything but
	// data for our own requests); excess is dropped and counted, and a peer
	// that keeps it up is disconnected.
	limit   *rate.Limiter
	excess  int
	flooded bool
}

// Peer-side limits: a well-behaved peer sends a few control messages a
// second (have, loading, requests for what it plays).
const (
	peerMessagesPerSecond = 100
	peerMessageBurst      = 200
	// peerExcessLimit messages over the rate get a peer disconnected.
	peerExcessLimit = 200
)

// transfer is one download from this peer.
type transfer struct {
	seq       uint64
	buf       []byte
	got       int
	total     int
	want      int // after a split (load.go's tail): complete at this many bytes
	firstByte time.Time
	lastByte  time.Time
	progress  chan struct{} // signalled on every chunk
	more      chan struct{} // made by an upload passing it on that waits for a chunk, closed by the next
	done      chan error    // one value: nil or why it ended
}

func newRemote(a *Agent, sw *swarm, id, offerID string, pc peerConn) *remote {
	return &remote{
		a: a, sw: sw, id: id, offerID: offerID, pc: pc,
		gathered:  make(chan struct{}),
		opened:    make(chan struct{}),
		closed:    make(chan struct{}),
		bufLow:    make(chan struct{}, 1),
		limit:     rate.NewLimiter(peerMessagesPerSecond, peerMessageBurst),
		have:      make(map[uint64]uint64),
		loading:   make(map[uint64]time.Time),
		downloads: make(map[uint32]*transfer),
		uploads:   make(map[uint32]context.CancelFunc),
	}
}

// attach wires a data channel (created or received) to the peer.
func (r *remote) attach(dc dataChannel) {
	r.dc = dc
	dc.SetBufferedAmountLowThreshold(lowWater)
	dc.OnBufferedAmountLow(func() {
		select {
		case r.bufLow <- struct{}{}:
		default:
		}
	})
	var once sync.Once
	open := func() { once.Do(r.onOpen) }
	dc.OnOpen(open)
	if dc.IsOpen() {
		// A channel the peer created may be open before we see it; the
		// browser then never fires onopen.
		go open()
	}
	dc.OnClose(func() { r.closeFor(GoneChannel) })
	dc.OnMessage(func(data []byte, text bool) {
		if text {
			r.a.log.Debug("peer sent text", "peer", r.id)
			r.closeFor(GoneBadWire)
			return
		}
		r.handle(data)
	})
}

// onOpen marks the peer usable and tells it everything we hold.
func (r *remote) onOpen() {
	r.mu.Lock()
	r.isConnected = true
	r.openedAt = time.Now()
	r.mu.Unlock()
	close(r.opened)
	r.a.emit(Event{Kind: EventPeerUp, Peer: r.id})
	if adv := r.a.cfg.Adversary; adv != nil && adv.FloodRequests {
		go r.flood()
	}
	if adv := r.a.cfg.Adversary; adv != nil && adv.SlowFirstWord > 0 {
		time.AfterFunc(adv.SlowFirstWord, r.firstWord)
	} else {
		r.firstWord()
	}
	r.sw.notify()
}

// firstWord tells a peer whose channel just opened whether this agent
// seeds, and everything it holds in the swarm: a viewer that does not
// seed sends its status, one that does its have list (empty or not), so
// that the peer knows when it has heard all (firstWordWait).
func (r *remote) firstWord() {
	// A viewer that does not seed says so first: the new peer would
	// otherwise count it among its seeds (seeding.go).
	if !r.a.seeds() {
		r.send(statusMessage(true))
	}
	// Tell the new peer everything we hold in this swarm.
	if !r.a.consumeOnly() {
		seqs := r.a.cache.seqs(r.sw.id)
		for first := true; first || len(seqs) > 0; first = false {
			n := min(len(seqs), peerwire.MaxHaveCount)
			flags := uint8(peerwire.HaveAdd)
			if first {
				flags = peerwire.HaveReplace
			}
			r.send(peerwire.Have(flags, seqs[:n]))
			seqs = seqs[n:]
		}
	}
}

func (r *remote) send(b []byte) bool {
	if r.dc == nil {
		return false
	}
	return r.dc.Send(b) == nil
}

// seeds reports whether the peer seeds: it has not said otherwise.
func (r *remote) seeds() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.noSeed
}

// connected reports whether the data channel is open.
func (r *remote) connected() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.isConnected
}

func (r *remote) handle(b []byte) {
	m, err := peerwire.Decode(b)
	if errors.Is(err, peerwire.ErrUnknownType) {
		return // a later version's message
	}
	if err != nil {
		r.a.log.Debug("bad peer message", "peer", r.id, "err", err)
		r.closeFor(GoneBadWire)
		return
	}
	if !r.allow(&m) {
		return
	}
	switch m.Type {
	case peerwire.TypeHave:
		r.mu.Lock()
		r.heard = true
		if m.Flags == peerwire.HaveReplace {
			clear(r.have)
		}
		for _, s := range m.Seqs {
			if m.Flags == peerwire.HaveRemoved {
				delete(r.have, s)
			} else {
				r.haveN++
				r.have[s] = r.haveN
				delete(r.loading, s)
			}
		}
		r.forgetEarliest()
		r.mu.Unlock()
		r.sw.notify()
	case peerwire.TypeLoading:
		now := time.Now()
		r.mu.Lock()
		if len(r.loading)+len(m.Seqs) > peerwire.MaxHaveCount {
			for s, at := range r.loading {
				if now.Sub(at) > loadingFor {
					delete(r.loading, s)
				}
			}
		}
		for _, s := range m.Seqs {
			if len(r.loading) < peerwire.MaxHaveCount {
				r.loading[s] = now
			}
		}
		r.mu.Unlock()
		r.sw.notify()
	case peerwire.TypeRequest:
		r.serve(m.ID, m.Seq, m.Offset)
	case peerwire.TypeCancel:
		r.mu.Lock()
		if cancel := r.uploads[m.ID]; cancel != nil {
			cancel()
		}
		r.mu.Unlock()
	case peerwire.TypeAbsent:
		r.finish(m.ID, errAbsent)
	case peerwire.TypeStatus:
		r.mu.Lock()
		r.noSeed = m.Flags&peerwire.StatusNoSeed != 0
		r.heard = true
		r.mu.Unlock()
		r.sw.notify()
	case peerwire.TypeData:
		r.mu.Lock()
		t := r.downloads[m.ID]
		if t == nil {
			r.mu.Unlock()
			r.a.stats.wasted.Add(int64(len(m.Data)))
			return // cancelled: chunks still in flight
		}
		if t.total == 0 && int(m.Total) >= t.got {
			t.firstByte = time.Now()
			t.total = int(m.Total)
			t.buf = append(make([]byte, 0, t.total), t.buf...)
		}
		if int(m.Total) != t.total || int(m.Offset) != t.got || t.got+len(m.Data) > t.total {
			r.mu.Unlock()
			r.finish(m.ID, fmt.Errorf("%w: chunk at %d of %d, expected %d of %d", errProtocol, m.Offset, m.Total, t.got, t.total))
			return
		}
		t.buf = append(t.buf, m.Data...)
		t.got += len(m.Data)
		t.lastByte = time.Now()
		if t.more != nil { // an upload passing it on waits
			close(t.more)
			t.more = nil
		}
		complete := t.got == t.total
		split := !complete && t.want > 0 && t.got >= t.want
		r.mu.Unlock()
		select {
		case t.progress <- struct{}{}:
		default:
		}
		if split {
			r.cancel(m.ID, nil) // the CDN sends the rest
		} else if complete {
			r.finish(m.ID, nil)
		}
	}
}

// maxHave bounds what the agent remembers a peer holds: 4 have messages
// in full; an honest peer's cache holds far fewer segments.
const maxHave = 4 * peerwire.MaxHaveCount

// forgetEarliest bounds r.have when a peer announces too much: the segments
// announced earliest are forgotten, down to a have message's worth below
// the bound, so that a peer flooding announcements costs one sort per
// message past the bound, not a scan per segment. (Not the smallest
// segment numbers: those are URL hashes, in no order.) r.mu is held.
func (r *remote) forgetEarliest() {
	if len(r.have) <= maxHave {
		return
	}
	type entry struct{ seq, n uint64 }
	all := make([]entry, 0, len(r.have))
	for s, n := range r.have {
		all = append(all, entry{s, n})
	}
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(a.n, b.n) })
	for _, e := range all[:len(all)-(maxHave-peerwire.MaxHaveCount)] {
		delete(r.have, e.seq)
	}
}

// allow applies the peer-side message limit: data for a download of ours
// passes; anything else over the rate is dropped (a request gets absent),
// and past peerExcessLimit drops the peer is disconnected.
func (r *remote) allow(m *peerwire.Message) bool {
	if m.Type == peerwire.TypeData {
		r.mu.Lock()
		_, ours := r.downloads[m.ID]
		r.mu.Unlock()
		if ours {
			return true
		}
	}
	if r.limit.Allow() {
		return true
	}
	r.mu.Lock()
	r.excess++
	over := r.excess > peerExcessLimit && !r.flooded
	if over {
		r.flooded = true
	}
	r.mu.Unlock()
	// Throttled requests get no answer: answering a flood would double it.
	if over {
		r.a.log.Warn("peer flooding: dropped", "peer", r.id)
		r.a.stats.flooders.Add(1)
		r.sw.ban(r.id)
		r.a.emit(Event{Kind: EventPeerDropped, Peer: r.id})
		go r.closeFor(GoneFlood)
	}
	return false
}

// serve uploads a segment to the peer, paced by the channel's buffer and
// the agent's upload cap, interleaved with the peer's other requests: from
// the cache, or passed on as it arrives from another peer (inflight.go).
func (r *remote) serve(id uint32, seq uint64, offset uint32) {
	k := segKey{r.sw.id, seq}
	adv := r.a.cfg.Adversary
	data, ok := r.a.cache.get(k)
	var in *inflight
	size := len(data)
	if !ok && (adv == nil || !adv.CorruptUploads && !adv.LieHashes) {
		// Not from the peer it arrives from: two viewers passing a segment
		// to each other would wait on each other.
		if in = r.a.arriving(k); in != nil && in.from != r {
			size = in.total()
			if size == 0 {
				size = int(r.a.lastSize.Load()) // not known yet: about the last one's
			}
		} else {
			in = nil
		}
	}
	r.mu.Lock()
	busy := len(r.uploads) >= maxUploadsPerPeer
	_, dup := r.uploads[id]
	r.mu.Unlock()
	if (!ok && in == nil) || r.a.consumeOnly() || busy || dup || (ok || size > 0) && int(offset) >= size {
		r.send(peerwire.Absent(id))
		return
	}
	pending := max(0, size-int(offset))
	if !r.a.uplink.admit(pending, time.Now(), r.a.uplinkState) {
		r.a.stats.uploadsRefused.Add(1)
		r.send(peerwire.Absent(id))
		return
	}
	if ok && adv != nil && (adv.CorruptUploads || adv.LieHashes) {
		data = corrupt(data)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.mu.Lock()
	r.uploads[id] = cancel
	r.mu.Unlock()
	go func() {
		off := int(offset)
		defer func() {
			cancel()
			r.a.uplink.handed(pending) // what was never sent
			r.mu.Lock()
			delete(r.uploads, id)
			r.mu.Unlock()
		}()
		// next returns the chunk at off: from the cached segment, or as it
		// arrives; errAbsent when it did not arrive whole and checked.
		next := func() ([]byte, int, error) {
			for {
				if data != nil {
					if off >= len(data) {
						return nil, len(data), io.EOF
					}
					return data[off : off+min(peerwire.MaxChunk, len(data)-off)], len(data), nil
				}
				if d, ok := r.a.cache.get(k); ok {
					data = d
					continue
				}
				chunk, total, err := in.chunk(ctx, off, peerwire.MaxChunk, r.closed)
				if errors.Is(err, errInflightEnded) {
					if d, ok := r.a.cache.get(k); ok && off <= len(d) {
						data = d
						continue
					}
					return nil, 0, errAbsent
				}
				return chunk, total, err
			}
		}
		// The first bytes before a turn on the uplink: a segment still
		// on its way from the CDN holds no turn while it comes.
		chunk, total, err := next()
		if errors.Is(err, errAbsent) {
			r.send(peerwire.Absent(id)) // the requester discards what it got
		}
		if err != nil {
			return
		}
		// Wait for a turn on the uplink (first come, first served):
		// copies go out one or two at a time, not side by side.
		turns := r.a.uplink.turns()
		select {
		case turns <- struct{}{}:
		case <-ctx.Done():
			return
		case <-r.closed:
			return
		}
		defer func() { <-turns }()
		if n := r.a.cfg.uploadStallFirst; n > 0 && r.a.stalledUploads.Add(1) <= n {
			<-ctx.Done() // hold the request open, send nothing
			return
		}
		buf := make([]byte, 0, peerwire.MaxMessage)
		for {
			n := len(chunk)
			if stall := r.a.cfg.uploadStallAfter; stall > 0 && off+n > stall {
				<-ctx.Done() // hold the request open, send nothing more
				return
			}
			if err := r.a.waitUpload(ctx, n); err != nil {
				return
			}
			for r.dc.BufferedAmount() > highWater {
				select {
				case <-r.bufLow:
				case <-time.After(50 * time.Millisecond):
				case <-ctx.Done():
					return
				case <-r.closed:
					return
				}
			}
			if ctx.Err() != nil {
				return
			}
			buf = peerwire.AppendData(buf[:0], id, uint32(off), uint32(total), chunk)
			if r.dc.Send(buf) != nil {
				return
			}
			r.a.stats.up.Add(int64(n))
			r.a.uplink.handed(min(n, pending))
			pending = max(0, pending-n)
			off += n
			if r.a.uplink.sample(time.Now(), r.a.uplinkState) {
				r.a.reviewSeeding()
			}
			if off == total {
				r.a.emit(Event{Kind: EventUpload, Peer: r.id, Seq: seq, Bytes: total - int(offset)})
			}
			if adv != nil && adv.SlowUploads {
				// About 2 KB/s: a tenth of the demo's lowest bitrate.
				select {
				case <-time.After(8 * time.Second):
				case <-ctx.Done():
					return
				}
			}
			if chunk, total, err = next(); err != nil {
				if errors.Is(err, errAbsent) {
					r.send(peerwire.Absent(id))
				}
				return
			}
		}
	}()
}

// fetch downloads segment seq from offset 0. It returns the bytes received
// so far (all of them on success) and why it stopped. It gives up when no
// byte arrives for stall (for the first byte, stall plus uploadQueueWait,
// which a holder may keep a request in its queue), or when it cannot
// finish by giveUp at the rate measured since the first byte. Not since
// the request: the wait in the holder's queue made a transfer at the
// holder's full rate look slow, and it was cancelled for the CDN as it
// began.
//
// plan says how the transfer may end early or start late (fetchPlan).
func (r *remote) fetch(ctx context.Context, seq uint64, stall time.Duration, giveUp time.Time, plan fetchPlan) ([]byte, int, *tail, error) {
	in, split, head := plan.in, plan.split, plan.head
	r.mu.Lock()
	r.nextID++
	id := r.nextID
	t := &transfer{seq: seq, buf: head, got: len(head), lastByte: time.Now(), progress: make(chan struct{}, 1), done: make(chan error, 1)}
	r.downloads[id] = t
	r.mu.Unlock()
	if in != nil {
		in.attach(t)
	}
	start := time.Now()
	if !r.send(peerwire.Request(id, seq, uint32(len(head)))) {
		r.finish(id, errPeerGone)
	}
	tick := time.NewTicker(stall / 4)
	defer tick.Stop()
	// The reserve point exactly, not at the next tick: the CDN's reserve
	// after it is sized for a whole segment, and a tick (stall/4) late
	// took a share of it, more so now that a split transfer runs close
	// to giveUp by design.
	reserve := time.NewTimer(time.Until(giveUp))
	defer reserve.Stop()
	var tl *tail
	for {
		select {
		case <-reserve.C:
			r.mu.Lock()
			sent := t.got > len(head)
			r.mu.Unlock()
			if sent {
				r.cancel(id, errLate)
			} else {
				r.cancel(id, errStalled) // not a byte in the load's time
			}
		case err := <-t.done:
			r.mu.Lock()
			buf, total := t.buf, t.total
			r.mu.Unlock()
			if err == nil || errors.Is(err, errLate) {
				r.observe(len(buf)-len(head), time.Since(start))
			}
			return buf, total, tl, err
		case <-t.progress:
		case <-tick.C:
			r.mu.Lock()
			last, got, total, first := t.lastByte, t.got, t.total, t.firstByte
			r.mu.Unlock()
			now := time.Now()
			late := false
			if total > 0 && got > len(head) && now.Sub(first) >= stall/4 {
				// Projected finish at the rate so far (a first chunk
				// alone measures nothing; a resumed transfer's rate
				// counts only what this peer sent).
				rate := float64(got-len(head)) / now.Sub(first).Seconds()
				end := total
				if tl != nil {
					end = tl.from
				}
				late = now.Add(time.Duration(float64(end-got) / rate * float64(time.Second))).After(giveUp)
				if late && tl == nil && plan.resume != nil && giveUp.Sub(now) > resumeLeast {
					// Another holder sends the rest (Load), not the CDN:
					// any holder when this transfer stalled (most likely
					// behind a lost packet and SCTP's retransmission
					// timer); one measured faster when it is only slow
					// (an uplink below the bitrate, or shared by many
					// requesters; mixed x 50 completed 226-269 such
					// transfers a run from the CDN, about half of each).
					stalled := now.Sub(last) > resumeStall
					if stalled && plan.resume(0) {
						r.cancel(id, errStalled)
						continue
					}
					if !stalled && plan.resume(rate) {
						r.observe(got-len(head), now.Sub(start))
						r.cancel(id, errSlow)
						continue
					}
				}
				if late && tl == nil && split != nil {
					if x := got + int(rate*giveUp.Sub(now).Seconds()*splitShare); x-got >= minSplit && total-x >= minSplit {
						r.mu.Lock()
						t.want = x
						r.mu.Unlock()
						tl = split(x)
						late = false
					}
				}
			}
			patience := stall
			if got == len(head) {
				patience += uploadQueueWait
			}
			if now.Sub(last) > patience {
				r.cancel(id, errStalled)
			} else if late { // (giveUp: the reserve timer)
				r.cancel(id, errLate)
			}
		case <-ctx.Done():
			r.cancel(id, errCancelled)
		case <-r.closed:
			r.finish(id, errPeerGone)
		}
	}
}

// fetchPlan is how a download may end early, or start late.
type fetchPlan struct {
	// in, when set, is where uploads find the transfer to pass its
	// bytes on.
	in *inflight
	// split, when set, is asked to start fetching the segment's tail
	// from the CDN when the transfer is projected late: the peer then
	// sends what it can by giveUp at its rate so far, less a reserve,
	// and the transfer ends there (returned with the tail; nil error
	// once the peer reached it).
	split func(from int) *tail
	// resume, when set, reports whether another peer could send the
	// rest: (0) any holder, for a transfer projected late that has
	// stalled (resumeStall), which then ends (errStalled) for it rather
	// than split; (rate) a holder faster than rate bytes/s, for one that
	// is only slow, which then ends with errSlow.
	resume func(rate float64) bool
	// head is the segment's first bytes, from another peer: the
	// transfer asks for the rest.
	head []byte
}

// resumeStall is how long without a chunk makes a late transfer a stalled
// one.
const resumeStall = 300 * time.Millisecond

// A split leaves the peer the bytes it would send by the load's giveUp at
// its rate so far, less a fifth for the rate's fall; not for a gain or a
// tail smaller than minSplit, where one CDN request for the rest is as good.
const (
	splitShare = 0.8
	minSplit   = 2 * peerwire.MaxChunk
)

// cancel stops a download and tells the peer.
func (r *remote) cancel(id uint32, why error) {
	r.send(peerwire.Cancel(id))
	r.finish(id, why)
}

// finish ends download id with err (nil: complete).
func (r *remote) finish(id uint32, err error) {
	r.mu.Lock()
	t := r.downloads[id]
	delete(r.downloads, id)
	r.mu.Unlock()
	if t != nil {
		t.done <- err
	}
}

// observe folds a finished transfer into the throughput estimate.
func (r *remote) observe(n int, d time.Duration) {
	if d <= 0 {
		d = time.Millisecond
	}
	bps := float64(n) / d.Seconds()
	r.mu.Lock()
	r.throughput = ewma(r.throughput, bps)
	r.failures = 0
	r.mu.Unlock()
}

// failedBy counts a transfer that ended with err against r, and drops r
// after maxFailures. Neither the requester's own cancel, nor a refusal
// (absent: busy, or passing on a copy that did not arrive), nor a peer
// sending too slowly for the time the load had (errSlow, errLate) counts.
func (r *remote) failedBy(err error) {
	if err == nil || errors.Is(err, errCancelled) || errors.Is(err, errAbsent) || errors.Is(err, errSlow) || errors.Is(err, errLate) {
		return
	}
	if r.failed() {
		r.a.log.Debug("dropping failing peer", "peer", r.id)
		r.closeFor(GoneFailing)
	}
}

// failed counts a failed transfer; it reports whether the peer should go.
func (r *remote) failed() bool {
	r.a.stats.failures.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures++
	r.throughput /= 2
	return r.failures >= maxFailures
}

func (r *remote) holds(seq uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.have[seq]
	return r.isConnected && ok
}

func (r *remote) isLoading(seq uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.loading[seq]
	return r.isConnected && ok && time.Since(at) < loadingFor
}

// loadingFor is how long a peer's loading announcement is believed without
// the have that ends it: a peer whose fetch failed says nothing more, and
// its neighbours stop waiting for it.
const loadingFor = 5 * time.Second

func (r *remote) rate() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.throughput
}

// addCandidate applies a trickled candidate, or keeps it until the remote
// description is set.
func (r *remote) addCandidate(c string) {
	r.mu.Lock()
	if !r.remoteSet {
		if len(r.candidates) < 64 {
			r.candidates = append(r.candidates, c)
		}
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	r.applyCandidate(c)
}

func (r *remote) applyCandidate(c string) {
	if c == "" {
		return // end of candidates
	}
	if isTCPCandidate(c) {
		return // candidate.go
	}
	if isRelayCandidate(c) && !r.a.relayAllowed() {
		r.a.log.Debug("relay candidate ignored (AllowRelay is off)", "peer", r.id)
		return
	}
	if err := r.pc.AddICECandidate(c); err != nil {
		r.a.log.Debug("bad candidate", "peer", r.id, "err", err)
	}
}

// setRemote applies the peer's description and the candidates that waited.
// negotiated reports whether the other side's description arrived: the
// offer (we answer) or its answer (we offered).
func (r *remote) negotiated() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.remoteSet
}

func (r *remote) setRemote(offer bool, sdp string) error {
	if !r.a.relayAllowed() {
		sdp = withoutRelayCandidates(sdp)
	}
	if err := r.pc.SetRemoteDescription(offer, sdp); err != nil {
		return err
	}
	r.mu.Lock()
	r.remoteSet = true
	pending := r.candidates
	r.candidates = nil
	r.mu.Unlock()
	for _, c := range pending {
		r.applyCandidate(c)
	}
	return nil
}

// Why a peer connection ended (EventPeerGone's Reason).
const (
	GoneLost    = "connection lost"   // ICE, DTLS or SCTP failed or closed under it
	GoneChannel = "channel closed"    // the data channel closed: by the peer, or with the connection
	GoneFailing = "failing transfers" // maxFailures transfers in a row stalled or broke
	GoneFlood   = "flooding"          // past peerExcessLimit messages over the rate
	GoneCorrupt = "corrupt segment"   // sent bytes that failed verification
	GoneBadWire = "bad message"       // sent what peerwire cannot decode, or text
	GoneClosed  = "closed"            // this agent left, gave up dialling, or lost a glare
)

// closeFor is close, saying why (the Gone constants).
func (r *remote) closeFor(why string) {
	r.why.CompareAndSwap(nil, why)
	r.close()
}

// close tears the peer down once; its transfers fail over to the CDN.
func (r *remote) close() {
	r.closeMu.Do(func() {
		close(r.closed)
		r.mu.Lock()
		was := r.isConnected
		r.isConnected = false
		for _, cancel := range r.uploads {
			cancel()
		}
		r.mu.Unlock()
		r.sw.remove(r)
		go r.pc.Close() // may block on the network; never hold a caller for it
		if was {
			why, _ := r.why.Load().(string)
			if why == "" {
				why = GoneClosed
				if r.gone.Load() {
					why = GoneLost
				}
			}
			r.a.emit(Event{Kind: EventPeerGone, Peer: r.id, Reason: why})
		}
		r.sw.notify()
	})
}
