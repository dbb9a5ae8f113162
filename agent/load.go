package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	pathpkg "path"

	"time"

	"github.com/peercdn/peercdn/peerwire"
	"github.com/peercdn/peercdn/signaling"
)

// Request asks for one media segment.
type Request struct {
	Swarm signaling.Swarm
	Seq   uint64 // the segment's name in its swarm: SegmentByURL names it as every viewer does
	URL   string // where the CDN serves it
	// Range, when set, says the segment is these bytes of URL (DASH
	// SegmentBase and SegmentList, HLS byte ranges): one file per
	// representation, as large VOD libraries store them.
	Range *signaling.ByteRange
	// Deadline is when the player needs the segment's first byte played:
	// now plus its buffer level. Zero means now (start-up, seeking).
	Deadline time.Time
	// Duration is the segment's media duration, if the player knows it:
	// with its size it gives the bitrate, against which the agent judges
	// whether its uplink can seed (seeding.go). Zero: unknown.
	Duration time.Duration
}

// source is where the CDN serves the segment.
func (r Request) source() signaling.Source { return signaling.Source{URL: r.URL, Range: r.Range} }

// Result is a loaded segment.
type Result struct {
	Data     []byte // shared with the cache: do not modify
	Source   Source
	Duration time.Duration // from the request to the last byte, waiting included
	// Transfer is the time the bytes took to arrive, without the wait for a
	// peer to hold the segment.
	Transfer time.Duration
	// ABR is what the player's bandwidth estimate should be told this load
	// took, and ABRFirstByte its time to first byte: the CDN's figures for
	// these bytes (see abrTiming). Zero ABR: no CDN figures yet, use Transfer.
	ABR, ABRFirstByte time.Duration
	// Why says why a load went to the CDN (the Why constants; empty for
	// other sources): pages' traces show it.
	Why string
}

// ErrCDN wraps failures of the CDN, which the agent cannot work around.
var ErrCDN = errors.New("agent: CDN fetch failed")

// peerWait is how long after joining a swarm an agent without peers still
// waits for some (within its deadline) rather than going to the CDN.
const peerWait = 3 * time.Second

// absentRetry is how long a holder that refused a request (busy) is left
// alone before it is asked again; also the longest wait between looks for
// a holder.
const absentRetry = 250 * time.Millisecond

// failRetry is how long a peer that failed a load is left alone before
// the load, still waiting, asks it again (doubling up to 8 times this).
const failRetry = time.Second

// backoff holds the peers a load asks again later: each after step,
// then twice, four times... that (up to 1<<maxShift), by how often it
// was let go.
type backoff struct {
	step     time.Duration
	maxShift int
	n        map[*remote]int
	at       map[*remote]time.Time // those waiting, since when
}

func newBackoff(step time.Duration, maxShift int) *backoff {
	return &backoff{step: step, maxShift: maxShift, n: map[*remote]int{}, at: map[*remote]time.Time{}}
}

// add puts r back to wait.
func (b *backoff) add(r *remote) {
	b.n[r]++
	b.at[r] = time.Now()
}

// release lets the peers whose wait is over be tried again.
func (b *backoff) release(tried map[*remote]bool) {
	for r, at := range b.at {
		if time.Since(at) >= b.step<<min(b.n[r]-1, b.maxShift) {
			delete(tried, r)
			delete(b.at, r)
		}
	}
}

// waiting says whether a peer waits to be asked again.
func (b *backoff) waiting() bool { return len(b.at) > 0 }

// defaultCDNEstimate is assumed for a CDN fetch before one was measured.
const defaultCDNEstimate = time.Second

// Load returns segment req.Seq, from the cache, a peer or the CDN:
//
//   - A peer that holds it is asked while there is time: the deadline minus
//     the time a CDN fetch is measured to take, plus CDNSafety.
//   - A transfer that stalls (no byte for P2PStallTimeout) or would finish
//     too late is cancelled and completed from the CDN with a range request.
//   - If no peer holds it yet, the one viewer of the neighbourhood elected
//     for this segment fetches it from the CDN at once and announces it as
//     loading, then held; the others wait for it until their deadline
//     leaves only the CDN reserve.
func (a *Agent) Load(ctx context.Context, req Request) (Result, error) {
	start := time.Now()
	k := segKey{req.Swarm, req.Seq}
	if data, ok := a.cache.get(k); ok {
		return a.done(req, data, SourceCache, start, start, nil, ""), nil
	}
	a.Join(req.Swarm)
	sw := a.swarmFor(&req.Swarm)
	if sw == nil { // left concurrently, or P2P is off
		return a.loadCDN(ctx, req, start, WhyOff, nil)
	}
	tried := map[*remote]bool{}
	// Holders that answered absent: busy (their uplink's backlog would
	// not drain in time; evictions are announced, so that is what absent
	// means). One is asked again after absentRetry, then twice and four
	// times that, while the load waits for it or for other holders.
	absents := newBackoff(absentRetry, 2)
	// Peers that failed this load while they were only receiving the
	// segment (passing it on, inflight.go): a stall then is the CDN's
	// first byte, not the peer. One is asked again once it holds the
	// segment whole; left out for good, the load waited for nobody until
	// MaxWait and fetched its own copy from the CDN.
	passers := map[*remote]bool{}
	// Peers that failed this load with nothing to show for it (a stall
	// before the first byte, a broken transfer): one is asked again after
	// failRetry, then twice, four and eight times that, while the load
	// still waits (a peer failing maxFailures transfers in a row is
	// dropped meanwhile). A VOD load may wait a minute (hls.js buffers a
	// whole title ahead, and the load waits until it is due within
	// FarAhead): left out for good after one stall, a peer that had held
	// the segment all along was never asked again, and the load fetched
	// its own copy from the CDN after 64 s (a field run).
	fails := newBackoff(failRetry, 3)
	// coming tells this viewer's peers, once, that it will hold the
	// segment shortly: it is taking it from a peer (the bytes are on
	// their way, as they are for a CDN fetch). Peers elected for the
	// segment in their own neighbourhood then wait for that copy instead
	// of fetching another from the CDN. Every viewer connects to a few
	// peers (MaxPeers), not the swarm, so each neighbourhood elected its
	// own: 50 viewers with 8 peers each fetched 5.5 CDN copies of each
	// segment. Only a viewer receiving says so: one that merely waits for
	// a loading peer would claim a copy with no bytes behind it, and
	// chains of such claims keep viewers waiting for copies that may not
	// come. Not under a quorum, which needs independent CDN
	// copies.
	announced := false
	coming := func() {
		if !announced && sw.quorum() == 1 {
			announced = true
			sw.broadcast(peerwire.Loading([]uint64{req.Seq}))
		}
	}
	why := WhyDue
	waitedForPeers := false // the loop slept at least once for a peer
	// patient: from then on, the load waits for peers for a while only
	// (patience, takeoverStep); before, it is due later than FarAhead.
	patient := patientUntil(start, req.Deadline, a.cfg.FarAhead)
	for ctx.Err() == nil {
		giveUp := req.Deadline.Add(-a.cdnEstimate() - a.cdnSafety())
		if !time.Now().Before(giveUp) {
			why = WhyDue
			break
		}
		absents.release(tried)
		fails.release(tried)
		for p := range passers {
			if p.holds(req.Seq) {
				delete(tried, p)
				delete(passers, p)
			}
		}
		r := sw.best(req.Seq, tried)
		passing := false
		if r == nil {
			// Nobody holds it whole: a peer receiving it passes it on
			// as it arrives (inflight.go).
			r = sw.receiving(req.Seq, tried)
			passing = r != nil
		}
		if r != nil && a.mayTakeFromPeers(ctx, sw, k, req.source()) {
			coming()
			xfer := time.Now()
			in := a.receive(k, r)
			// resumer is the holder to ask for the rest of a stalled
			// transfer from r, if one is connected and there is time.
			resumer := func() *remote {
				if time.Until(giveUp) <= resumeLeast {
					return nil
				}
				return sw.holderBesides(req.Seq, tried, r)
			}
			plan := fetchPlan{in: in,
				split: func(from int) *tail { return a.fetchTail(ctx, req.source(), from) },
				resume: func(rate float64) bool {
					r2 := resumer()
					return r2 != nil && (rate == 0 || r2.rate() > switchGain*rate)
				}}
			data, total, tl, err := r.fetch(ctx, req.Seq, a.cfg.P2PStallTimeout, giveUp, plan)
			if tl != nil && ctx.Err() == nil {
				// The CDN is sending the tail: the peer's bytes before
				// it are kept, unless it answered absent (a passer
				// whose copy did not arrive whole).
				if errors.Is(err, errAbsent) {
					a.stats.wasted.Add(int64(len(data)))
					data = nil
				}
				r.failedBy(err)
				res, err := a.completeFromCDN(ctx, req, sw, r, data, total, tl, start, xfer)
				a.endInflight(k, in) // after the store: uploads passing it on finish from the cache
				return res, err
			}
			if err == nil && !a.goodFromPeer(k, req.source(), data) {
				a.endInflight(k, in)
				a.stats.wasted.Add(int64(len(data)))
				a.badPeer(sw, r, k)
				tried[r] = true
				continue
			}
			if err == nil {
				a.waited(true)
				a.stats.p2p.Add(int64(len(data)))
				a.store(k, data)
				a.endInflight(k, in)
				return a.done(req, data, SourceP2P, start, xfer, nil, ""), nil
			}
			tried[r] = true
			if passing {
				passers[r] = true
			} else if !errors.Is(err, errAbsent) {
				fails.add(r)
			}
			if errors.Is(err, errAbsent) {
				// Busy, or passing on a copy that did not arrive whole:
				// what came of it is discarded, nobody is blamed.
				a.endInflight(k, in)
				a.stats.wasted.Add(int64(len(data)))
				absents.add(r)
				continue
			}
			r.failedBy(err)
			if len(data) > 0 && total > 0 && ctx.Err() == nil {
				var suspect *remote // sent a rest that did not check out
				if r2 := resumer(); r2 != nil && (errors.Is(err, errStalled) || errors.Is(err, errSlow) || errors.Is(err, errLate)) {
					if whole, ok := a.resumeFrom(ctx, req, r2, data, total, giveUp); ok {
						a.waited(true)
						a.endInflight(k, in)
						return a.done(req, whole, SourceP2P, start, xfer, nil, ""), nil
					} else if whole != nil {
						suspect = r2
					}
				}
				res, err := a.completeFromCDN(ctx, req, sw, r, data, total, nil, start, xfer)
				if err == nil && suspect != nil && res.Source == SourceMixed {
					a.badPeer(sw, suspect, k) // r's bytes checked out with the CDN's: r2's did not
				}
				a.endInflight(k, in) // after the store: uploads passing it on finish from the cache
				return res, err
			}
			a.endInflight(k, in)
			a.stats.wasted.Add(int64(len(data)))
			continue
		}
		// This agent's place in line to seed seq among its peers (the
		// first quorum are elected), once for the checks below and the nap.
		place := sw.inLine(a.selfID(), req.Seq)
		takeover, mayTakeOver := a.takeoverAt(sw, place, patient, giveUp)
		hearing := sw.hearingUntil()
		if sw.connectedCount() == 0 {
			if time.Since(sw.joined) > peerWait {
				why = WhyAlone
				break // nobody to wait for
			}
			// Just joined: peers are on their way.
		} else if time.Now().Before(hearing) {
			// A peer just connected and its have list is on its way
			// (firstWordWait): no seeding from the CDN before it is read.
		} else if r == nil && !absents.waiting() && !fails.waiting() && place < sw.quorum() && sw.loadingCount(req.Seq) < sw.quorum() {
			// Our turn to seed the swarm from the CDN (one of quorum
			// copies); not while a holder is only busy, or waits to be
			// asked again.
			why = WhyElected
			break
		} else if mayTakeOver && r == nil && !absents.waiting() && !fails.waiting() &&
			!time.Now().Before(takeover) && sw.loadingCount(req.Seq) < sw.quorum() {
			// The viewer elected has not asked for it yet: this one,
			// next in line, seeds it in its place (takeoverAt).
			why = WhyTakeover
			break
		}
		// (A peer holds it but no hash is trusted yet: the tracker was
		// asked (askHash); its answer wakes this wait.)
		// Peers announce, or connect; poll too, for the tracker connection.
		// A segment due later than FarAhead waits for as long as it is:
		// two VOD viewers racing through a title otherwise each took half
		// of it from the CDN twice (the one elected was behind the other,
		// and the other gave up after MaxWait).
		// Not past MaxWait for a peer saying it is loading: waiting until
		// the CDN reserve stalled a browser viewer on a starved CPU, whose
		// CDN fetch then took longer than the reserve.
		if time.Since(patient) > a.patience() {
			why = WhyWaited
			break // waited long enough for a peer to get it: the CDN, now
		}
		nap := min(time.Until(giveUp), absentRetry)
		if mayTakeOver && time.Now().Before(takeover) {
			nap = min(nap, max(time.Until(takeover), time.Millisecond))
		}
		if time.Now().Before(hearing) {
			nap = min(nap, max(time.Until(hearing), time.Millisecond))
		}
		t := time.NewTimer(nap)
		select {
		case <-sw.wait():
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		waitedForPeers = true
	}
	if ctx.Err() != nil {
		return Result{}, ctx.Err()
	}
	if waitedForPeers && (why == WhyDue || why == WhyWaited) {
		a.waited(false) // not a startup load, due at once: it never waited
	}
	sw.broadcast(peerwire.Loading([]uint64{req.Seq}))
	a.announceFetch(k, req.source())
	// Peers that ask for it meanwhile wait for it in the queue of the
	// uplink, and get it once it is checked and stored, rather than
	// absent and a retry later.
	in := a.receive(k, nil)
	return a.loadCDN(ctx, req, start, why, in)
}

// takeoverAt is when this agent, place-th in line for a segment and not
// elected for it, fetches it for its neighbourhood in the elected viewer's place if no peer holds, receives
// or is loading it yet (swarm.takeoverAfter): its place in line times
// takeoverStep after the load's patient point, and not before a copy
// fetched from the CDN now would land just at the load's reserve point
// (giveUp less the CDN estimate). On a fast CDN that is late: the elected
// viewer, asking up to a target duration later, still delivers in time,
// and the copies a takeover costs when its announcement crosses the
// elected viewer's own fetch (5 in a field run, on busy pages) are not
// spent. On a slow CDN (1.2 Mbit/s) it is at once. Not for a segment due
// later than FarAhead (patient is later): a VOD viewer ahead of the
// others waits for the one elected, who gets there.
func (a *Agent) takeoverAt(sw *swarm, place int, patient, giveUp time.Time) (time.Time, bool) {
	wait := sw.takeoverAfter(place)
	if wait <= 0 {
		return time.Time{}, false
	}
	at := patient.Add(wait)
	if late := giveUp.Add(-a.cdnEstimate() + wait - takeoverStep); late.After(at) {
		at = late
	}
	return at, true
}

// waited folds a load's outcome into how often waiting for peers pays: a
// load from peers (true), or one that waited for them until its reserve
// point or MaxWait and went to the CDN (false).
func (a *Agent) waited(paid bool) {
	x := int64(0)
	if paid {
		x = 1000
	}
	old := a.waitPays.Load()
	a.waitPays.Store((9*old + x) / 10)
}

// patience is how long a load due soon waits for a peer to get it: MaxWait,
// shortened in proportion as waits lately ended at the CDN anyway, down to
// a fifth. A viewer whose peers cannot deliver (a swarm on a starved CPU,
// uplinks below the bitrate) otherwise spent up to MaxWait of its buffer
// on every segment, and the CDN fetch it then made had less time than it
// needed: cable x 200 on 2 cores stalled 59 times where the CDN alone
// stalled 3.
func (a *Agent) patience() time.Duration {
	pays := max(200, a.waitPays.Load())
	return a.maxWait() * time.Duration(pays) / 1000
}

// patientUntil is when a load started at start and due at deadline stops
// waiting for peers without limit: when it is due within farAhead.
func patientUntil(start, deadline time.Time, farAhead time.Duration) time.Time {
	if t := deadline.Add(-farAhead); t.After(start) {
		return t
	}
	return start
}

// loadCDN fetches req from the CDN; in, when set, is ended once the copy
// is stored or refused.
func (a *Agent) loadCDN(ctx context.Context, req Request, start time.Time, why string, in *inflight) (Result, error) {
	xfer := time.Now()
	data, _, took, err := a.fetchCDN(ctx, req.source(), 0, -1)
	if err != nil {
		if in != nil {
			a.endInflight(segKey{req.Swarm, req.Seq}, in)
		}
		return Result{}, err
	}
	a.keepCDNBehind(ctx, req, data, in)
	return a.done(req, data, SourceCDN, start, xfer, &took, why), nil
}

// keepCDNBehind is keepCDN for bytes the player is waiting for: the player
// gets the CDN's bytes as it would without peercdn, at once, and the check
// that decides whether they are shared runs behind it. That check can
// take a fetch of the origin's manifest, which a startup segment waited
// for: a CDN round trip more before the first frame (50 ms more than the
// CDN alone at startup on simulated cable links).
func (a *Agent) keepCDNBehind(ctx context.Context, req Request, data []byte, in *inflight) {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), keepTimeout)
	go func() {
		defer cancel()
		a.keepCDN(kctx, req, data)
		if in != nil {
			a.endInflight(segKey{req.Swarm, req.Seq}, in)
		}
	}()
}

// keepTimeout bounds the checks before a CDN copy is shared.
const keepTimeout = 30 * time.Second

// Adopt takes a segment the player fetched from the CDN on its own (before
// the agent started, or falling back) as if the agent had: checked against
// the hashes it knows, reported to the tracker and shared. Without it the
// first viewer's startup segments were in no cache, and the second viewer
// fetched them from the CDN again. It waits, up to ctx, for the tracker
// connection its report needs; the player's bytes are already counted
// (ReportPlayerCDN).
func (a *Agent) Adopt(ctx context.Context, req Request, data []byte) {
	a.Join(req.Swarm) // the player plays it: its peers connect now, not at the next load
	if len(data) == 0 || len(data) > peerwire.MaxSegmentSize || a.cache.has(segKey{req.Swarm, req.Seq}) {
		return
	}
	if req.Range != nil && int64(len(data)) != req.Range.Len() {
		return // not the range named: a player's copy of something else
	}
	for a.tracker() == nil {
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	if !a.cache.has(segKey{req.Swarm, req.Seq}) {
		a.keepCDN(ctx, req, data)
	}
}

// ObservePlayerCDN folds a CDN load the player made on its own (n bytes,
// first byte after ttfb, whole after total) into the agent's CDN figures,
// which it tells players' ABR for the segments it delivers (abrTiming).
// Without them a first segment from a peer was reported at the peer's
// speed, and hls.js switched a viewer on a slow CDN to a rendition the
// CDN could not carry, alone in its swarm.
func (a *Agent) ObservePlayerCDN(n int, ttfb, total time.Duration) {
	if n <= 0 || total <= 0 || ttfb < 0 || ttfb > total {
		return
	}
	a.observeCDN(ttfb, n, total, true)
}

// tracker is the tracker connection, nil while there is none.
func (a *Agent) tracker() *signaling.Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sig
}

// keepCDN stores the agent's own CDN copy of a segment for peers, unless
// a stronger hash says it is damaged (keepCDNCopy).
func (a *Agent) keepCDN(ctx context.Context, req Request, data []byte) {
	k := segKey{req.Swarm, req.Seq}
	sw := a.swarmFor(&req.Swarm)
	if sw == nil {
		a.store(k, data) // P2P off: the cache serves the player's own repeats
		return
	}
	if a.keepCDNCopy(ctx, sw, k, req.source(), data) {
		a.store(k, data)
	}
}

// completeFromCDN fetches the bytes a peer did not deliver with range
// requests: after head, up to the tail split off (tl) if one was, which
// the CDN is sending already, else to the end. If the CDN's size disagrees
// with the peer's, the peer's bytes are dropped and the whole segment comes
// from the CDN; so they are when the whole fails verification (and the peer
// r is dropped).
func (a *Agent) completeFromCDN(ctx context.Context, req Request, sw *swarm, r *remote, head []byte, total int, tl *tail, start, xfer time.Time) (Result, error) {
	var rest []byte
	var cdnTotal int
	var err error
	switch {
	case tl == nil:
		rest, cdnTotal, _, err = a.fetchCDN(ctx, req.source(), len(head), -1)
	case len(head) >= tl.from:
		a.stats.wasted.Add(int64(len(head) - tl.from)) // sent past the split
		head = head[:tl.from]
		rest, cdnTotal, err = tl.wait(ctx)
	default:
		// The peer stopped short of the split: the gap, then the tail.
		rest, cdnTotal, _, err = a.fetchCDN(ctx, req.source(), len(head), tl.from)
		if err == nil && cdnTotal != len(rest) { // not the whole segment (a CDN ignoring Range)
			var back []byte
			var backTotal int
			back, backTotal, err = tl.wait(ctx)
			switch {
			case backTotal == len(back):
				rest, cdnTotal = back, backTotal
			case backTotal != cdnTotal:
				cdnTotal = -1 // the CDN's two answers disagree: fetched whole below
			default:
				rest = append(rest, back...)
			}
		}
	}
	if err != nil {
		return Result{}, err
	}
	var data, joined []byte
	sizesAgree := cdnTotal == total && len(head)+len(rest) == total
	if sizesAgree {
		joined = append(head[:len(head):len(head)], rest...)
	}
	switch {
	case len(head) > 0 && sizesAgree && a.goodFromPeer(segKey{req.Swarm, req.Seq}, req.source(), joined):
		data = joined
		a.stats.p2p.Add(int64(len(head)))
	case cdnTotal == len(rest): // the CDN sent it whole (no range support, sizes differ, or no peer bytes kept)
		a.stats.wasted.Add(int64(len(head)))
		a.keepCDNBehind(ctx, req, rest, nil)
		return a.done(req, rest, SourceCDN, start, xfer, nil, ""), nil
	default:
		a.stats.wasted.Add(int64(len(head)))
		if sizesAgree && len(head) > 0 {
			a.badPeer(sw, r, segKey{req.Swarm, req.Seq}) // the sizes agreed: the peer's bytes did not
		}
		data, _, _, err = a.fetchCDN(ctx, req.source(), 0, -1)
		if err != nil {
			return Result{}, err
		}
		a.keepCDNBehind(ctx, req, data, nil)
		return a.done(req, data, SourceCDN, start, xfer, nil, ""), nil
	}
	a.store(segKey{req.Swarm, req.Seq}, data)
	return a.done(req, data, SourceMixed, start, xfer, nil, ""), nil
}

// resumeLeast is the least time before a load's reserve point worth asking
// another holder for the rest of a stalled transfer.
const resumeLeast = 500 * time.Millisecond

// switchGain is how much faster than a slow transfer another holder must be
// measured for the rest to be asked of it. Not an untried holder: it may be
// as slow, and the CDN then sends more than a split would have left it
// (mixed x 50 asking untried ones too: 258 and 220 transfers completed from
// the CDN against 240 and 226 without switching).
const switchGain = 1.5

// resumeFrom asks r2 for the rest of a segment whose transfer stalled, or
// ran too slow, after head. It returns the whole segment and true if r2
// sent the rest in time and the whole checked out. Whole but bad, it
// returns the bytes and false: head's sender or r2 sent bad bytes, and the
// CDN's rest after head tells which. Anything else returns nil: the CDN
// sends the rest after head. The rest is never split with the CDN: a bad
// whole of three sources would blame nobody surely.
func (a *Agent) resumeFrom(ctx context.Context, req Request, r2 *remote, head []byte, total int, giveUp time.Time) ([]byte, bool) {
	data, total2, _, err := r2.fetch(ctx, req.Seq, a.cfg.P2PStallTimeout, giveUp, fetchPlan{head: head})
	if err != nil || total2 != total || len(data) != total {
		a.stats.wasted.Add(int64(max(0, len(data)-len(head))))
		r2.failedBy(err)
		return nil, false
	}
	k := segKey{req.Swarm, req.Seq}
	if !a.goodFromPeer(k, req.source(), data) {
		a.stats.wasted.Add(int64(len(data) - len(head)))
		return data, false
	}
	a.stats.p2p.Add(int64(len(data)))
	a.store(k, data)
	return data, true
}

// done records a loaded segment and returns it. cdn is the fetch that
// brought it whole from the CDN, if one did.
func (a *Agent) done(req Request, data []byte, src Source, start, xfer time.Time, cdn *fetchTiming, why string) Result {
	d := time.Since(start)
	rec := SegmentRecord{Seq: req.Seq, Source: src, Bytes: len(data), Duration: d, At: start, Why: why}
	if src != SourceCache {
		a.stats.record(rec)
		a.noteBitrate(len(data), req.Duration)
	}
	a.emit(Event{Kind: EventSegment, Segment: &rec})
	res := Result{Data: data, Source: src, Duration: d, Transfer: time.Since(xfer), Why: why}
	res.ABR, res.ABRFirstByte = a.abrTiming(len(data), cdn)
	return res
}

// abrTiming is what a player's ABR should be told a load of n bytes took:
// the CDN fetch's own times when the CDN served it whole, and otherwise the
// time the CDN is measured to need for n bytes (zero before any CDN fetch).
//
// Not the wait for a peer: that is the agent's choice, not the network's,
// and hls.js counted it as time to first byte and lost bandwidth, and held
// such a viewer at a fraction of its rate (1.4 against 40 Mbit/s on
// loopback). Not a peer's speed either: the CDN is what every segment falls
// back to, so a player choosing renditions by what peers deliver would pick
// ones the CDN cannot keep up with when they leave. So the player picks what
// it would pick without peercdn.
func (a *Agent) abrTiming(n int, cdn *fetchTiming) (total, firstByte time.Duration) {
	if cdn != nil {
		return cdn.total, cdn.firstByte
	}
	rtt, rate := time.Duration(a.cdnRTT.Load()), a.cdnRate.Load()
	if rtt == 0 || rate <= 0 {
		return 0, 0
	}
	return rtt + time.Duration(float64(n)/float64(rate)*float64(time.Second)), rtt
}

// fetchTiming is how long a CDN fetch took to its first byte and its last.
type fetchTiming struct{ firstByte, total time.Duration }

// fetchCDN gets the segment at src from its byte from on, up to byte to
// (not included; negative: to its end). It returns the body, the whole
// segment's size and how long it took; when the CDN ignores the range, the
// body is the whole segment (its size). A body cut short is an error: such
// bytes are never cached or shared.
func (a *Agent) fetchCDN(ctx context.Context, src signaling.Source, from, to int) ([]byte, int, fetchTiming, error) {
	start := time.Now()
	first, last, size := int64(from), int64(-1), -1
	if to >= 0 {
		last = int64(to) - 1
	}
	if src.Range != nil {
		first, last, size = src.Range.First+int64(from), src.Range.Last, int(src.Range.Len())
		if to >= 0 {
			last = src.Range.First + int64(to) - 1
		}
	}
	whole := from == 0 && to < 0 // the segment, not the tail of one
	resp, err := a.cfg.CDN.Get(ctx, src.URL, first, last)
	if err != nil {
		return nil, 0, fetchTiming{}, fmt.Errorf("%w: %v", ErrCDN, err)
	}
	defer resp.Body.Close()
	ttfb := time.Since(start)
	if !resp.HeadersAt.IsZero() {
		ttfb = resp.HeadersAt.Sub(start)
	}
	body := io.Reader(resp.Body)
	want := resp.ContentLength
	switch {
	case resp.Status == 200 && src.Range != nil:
		// The CDN ignores Range: the segment is cut from the whole file
		// (counted as CDN bytes, as they were sent), not far into a
		// large one: the player's own load goes to the CDN instead.
		if src.Range.First > signaling.MaxRangeSkip {
			return nil, 0, fetchTiming{}, fmt.Errorf("%w: %s: the CDN ignores Range, and %s is too far into the file", ErrCDN, src.URL, src.Range.Header())
		}
		skipped, err := io.CopyN(io.Discard, resp.Body, src.Range.First)
		a.stats.cdn.Add(skipped)
		if err != nil {
			return nil, 0, fetchTiming{}, fmt.Errorf("%w: %s: the file ends before %s", ErrCDN, src.URL, src.Range.Header())
		}
		from = 0
		body, want = io.LimitReader(resp.Body, src.Range.Len()), src.Range.Len()
	case resp.Status == 200:
		from = 0
		size = int(resp.ContentLength)
	case resp.Status == 206:
		got, total, ok := signaling.ParseContentRange(resp.ContentRange)
		if !ok || got.First != first || (last >= 0 && got.Last != last) {
			return nil, 0, fetchTiming{}, fmt.Errorf("%w: %s: asked bytes %d-, got Content-Range %q", ErrCDN, src.URL, first, resp.ContentRange)
		}
		if src.Range == nil {
			size = int(total)
		}
	default:
		return nil, 0, fetchTiming{}, fmt.Errorf("%w: %s: HTTP %d", ErrCDN, src.URL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(body, peerwire.MaxSegmentSize+1))
	a.stats.cdn.Add(int64(len(data)))
	if err != nil {
		return nil, 0, fetchTiming{}, fmt.Errorf("%w: %s: %v after %d bytes", ErrCDN, src.URL, err, len(data))
	}
	if len(data) > peerwire.MaxSegmentSize {
		return nil, 0, fetchTiming{}, fmt.Errorf("%w: %s: larger than %d bytes", ErrCDN, src.URL, peerwire.MaxSegmentSize)
	}
	if want >= 0 && int64(len(data)) != want {
		return nil, 0, fetchTiming{}, fmt.Errorf("%w: %s: got %d of %d bytes", ErrCDN, src.URL, len(data), want)
	}
	if size < 0 && to < 0 {
		size = from + len(data)
	}
	end := time.Now()
	if b, ok := resp.Body.(arrival); ok && !b.arrived().IsZero() {
		end = b.arrived()
	}
	took := fetchTiming{firstByte: ttfb, total: end.Sub(start)}
	a.observeCDN(ttfb, len(data), took.total, whole)
	return data, size, took, nil
}

// observeCDN folds a fetch into the CDN estimates: its time to first
// byte, and if it was a whole segment, its rate and size. A segment's
// tail (a range after a peer's bytes, often a few KB) measures the
// response's fixed costs more than the link: folded in, tails made the
// CDN look slower than its whole segments did, and players' ABR, which
// samples whole segments, was told so.
func (a *Agent) observeCDN(ttfb time.Duration, n int, d time.Duration, whole bool) {
	foldInto(&a.cdnRTT, int64(ttfb))
	if !whole {
		return
	}
	if body := d - ttfb; n > 0 && body > 0 {
		foldInto(&a.cdnRate, int64(float64(n)/body.Seconds()))
	}
	foldInto(&a.segSize, int64(n))
}

// cdnEstimate is how long a CDN fetch of a typical segment takes here.
func (a *Agent) cdnEstimate() time.Duration {
	rtt, rate, size := a.cdnRTT.Load(), a.cdnRate.Load(), a.segSize.Load()
	if rtt == 0 {
		return defaultCDNEstimate
	}
	d := time.Duration(rtt)
	if rate > 0 {
		d += time.Duration(float64(size) / float64(rate) * float64(time.Second))
	}
	return 2 * d // the CDN varies; plan for twice the average
}

// SegmentByURL names a segment the way browser players see it, by URL: the
// swarm is the content id (contentID, or else the manifest URL's path) and
// the segment's folder (one per rendition); the segment is its
// signaling.SegmentID. Query strings and CDN hosts do not matter, so
// tokenized and multi-CDN URLs share swarms, and hls.js and Shaka viewers
// meet.
func SegmentByURL(contentID, manifestURL, segmentURL string) Request {
	return SegmentByRange(contentID, manifestURL, segmentURL, nil)
}

// SegmentByRange names a segment that may be a byte range of segmentURL
// (rng nil: the whole response). A ranged segment's rendition is its file,
// not the folder: one file holds one representation, and a folder often
// several.
func SegmentByRange(contentID, manifestURL, segmentURL string, rng *signaling.ByteRange) Request {
	p := signaling.ContentID(segmentURL)
	if contentID == "" {
		contentID = signaling.ContentID(manifestURL)
	}
	if contentID == "" {
		contentID = pathpkg.Dir(p)
	}
	rendition := pathpkg.Dir(p)
	if rng != nil {
		rendition = p
	}
	return Request{
		Swarm: signaling.Swarm{Content: contentID, Rendition: rendition},
		Seq:   signaling.SegmentID(segmentURL, rng),
		URL:   segmentURL,
		Range: rng,
	}
}

// Prefetch fetches a segment the player will need later, from peers only:
// it never costs CDN bytes. It reports whether the segment is now cached.
// Players call it for upcoming segments (VOD) while their buffer is
// healthy; at most one prefetch runs at a time per agent.
func (a *Agent) Prefetch(ctx context.Context, req Request) bool {
	k := segKey{req.Swarm, req.Seq}
	if a.cache.has(k) {
		return true
	}
	if !a.prefetching.CompareAndSwap(false, true) {
		return false
	}
	defer a.prefetching.Store(false)
	sw := a.swarmFor(&req.Swarm)
	if sw == nil {
		return false
	}
	r := sw.best(req.Seq, nil)
	if r == nil || !a.mayTakeFromPeers(ctx, sw, k, req.source()) {
		return false
	}
	in := a.receive(k, r)
	defer a.endInflight(k, in) // after the store below
	data, _, _, err := r.fetch(ctx, req.Seq, a.cfg.P2PStallTimeout, time.Now().Add(prefetchBudget), fetchPlan{in: in})
	if err == nil && !a.goodFromPeer(k, req.source(), data) {
		a.stats.wasted.Add(int64(len(data)))
		a.badPeer(sw, r, k)
		return false
	}
	if err != nil {
		a.stats.wasted.Add(int64(len(data)))
		r.failedBy(err)
		return false
	}
	a.stats.p2p.Add(int64(len(data)))
	a.stats.prefetched.Add(1)
	a.store(k, data)
	return true
}

// prefetchBudget bounds one prefetch: nothing waits for it.
const prefetchBudget = 10 * time.Second

// A tail is the CDN fetch of a segment's last bytes, from byte from on,
// made while a peer too slow to send the whole in time still sends what
// comes before: on cable links (50 viewers) about 190 transfers a minute
// were projected late, a third of the way through on average, and the CDN
// then sent the other two thirds while the peer could have sent half of
// them before the CDN's reserve.
type tail struct {
	from  int
	done  chan struct{}
	data  []byte
	total int // the segment's size, as the CDN says
	err   error
}

// fetchTail starts fetching src's bytes from from on.
func (a *Agent) fetchTail(ctx context.Context, src signaling.Source, from int) *tail {
	t := &tail{from: from, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		t.data, t.total, _, t.err = a.fetchCDN(ctx, src, from, -1)
	}()
	return t
}

// wait returns the tail's bytes and the segment's size.
func (t *tail) wait(ctx context.Context) ([]byte, int, error) {
	select {
	case <-t.done:
		return t.data, t.total, t.err
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
}
