package agent

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peercdn/peercdn/peerwire"
	"github.com/peercdn/peercdn/signaling"
)

// swarm is the agent's side of one swarm: its peers, connected or not.
type swarm struct {
	a      *Agent
	id     signaling.Swarm
	joined time.Time

	mu      sync.Mutex
	peers   map[string]*remote
	changed chan struct{}   // closed and replaced whenever a peer's holdings change
	banned  map[string]bool // peers that sent corrupt bytes: never again
	// unreachable: peers a negotiated connection to failed (NATs that
	// never let the two meet), and until when neither dials nor accepts
	// the other again.
	unreachable map[string]unreachable
	// hasManifest: the origin publishes hashes for this swarm, so one CDN
	// copy per segment is enough (no tracker quorum).
	hasManifest atomic.Bool

	// toDial: peers the tracker suggested, waiting for one of the
	// DialsAtOnce offers under way to settle (dialling).
	toDial   []string
	dialling int
	dialPeak int // the most offers under way at once (tests)
	dialCtx  context.Context
	dialC    *signaling.Client
}

func newSwarm(a *Agent, id signaling.Swarm) *swarm {
	return &swarm{a: a, id: id, joined: time.Now(), peers: make(map[string]*remote), changed: make(chan struct{})}
}

// notify wakes everyone waiting for a peer to announce something.
func (sw *swarm) notify() {
	sw.mu.Lock()
	close(sw.changed)
	sw.changed = make(chan struct{})
	sw.mu.Unlock()
}

// wait returns a channel closed at the next change.
func (sw *swarm) wait() <-chan struct{} {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.changed
}

func (sw *swarm) peer(id string) *remote {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.peers[id]
}

func (sw *swarm) count() int {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return len(sw.peers)
}

func (sw *swarm) connected() []*remote {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	out := make([]*remote, 0, len(sw.peers))
	for _, r := range sw.peers {
		if r.connected() {
			out = append(out, r)
		}
	}
	return out
}

func (sw *swarm) connectedCount() int { return len(sw.connected()) }

func (sw *swarm) remove(r *remote) {
	sw.mu.Lock()
	if sw.peers[r.id] == r {
		delete(sw.peers, r.id)
	}
	sw.mu.Unlock()
}

func (sw *swarm) broadcast(b []byte) {
	for _, r := range sw.connected() {
		r.send(b)
	}
}

func (sw *swarm) closeAll() {
	sw.mu.Lock()
	all := make([]*remote, 0, len(sw.peers))
	for _, r := range sw.peers {
		all = append(all, r)
	}
	sw.mu.Unlock()
	for _, r := range all {
		r.close()
	}
}

// reserve claims a slot for peer id; false when full or already there.
// An agent dials peers up to MaxPeers but accepts offers up to
// maxIncoming, so that in a swarm where everyone has dialled their fill a
// newcomer still finds room.
func (sw *swarm) reserve(r *remote, incoming bool) bool {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	limit := sw.a.maxPeers()
	if incoming {
		limit = sw.a.maxIncoming()
	}
	if _, ok := sw.peers[r.id]; ok || len(sw.peers) >= limit || sw.banned[r.id] {
		return false
	}
	sw.peers[r.id] = r
	return true
}

// unreachable is one peer's failures to connect.
type unreachable struct {
	fails int
	until time.Time
}

// unreachableWait is how long a peer that failed to connect is left alone:
// 30 s, doubling per further failure, up to 10 minutes. A swarm with
// viewers behind symmetric NATs otherwise spends its slots and the
// tracker's relays redialling peers it can never reach.
func unreachableWait(fails int) time.Duration {
	return min(10*time.Minute, 30*time.Second<<min(fails-1, 5))
}

// maxUnreachable bounds the memory of failures (a peer connection each,
// so MaxPeerConnections bounds them anyway).
const maxUnreachable = 512

// failed records that a negotiated connection to id never opened.
func (sw *swarm) failed(id string, now time.Time) {
	sw.a.stats.peersFailed.Add(1)
	sw.a.emit(Event{Kind: EventPeerFailed, Peer: id, Reason: "never connected (NAT or firewall between the two)"})
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.unreachable == nil {
		sw.unreachable = map[string]unreachable{}
	}
	if len(sw.unreachable) >= maxUnreachable {
		for k, u := range sw.unreachable {
			if now.After(u.until) {
				delete(sw.unreachable, k)
			}
		}
	}
	u := sw.unreachable[id]
	u.fails++
	u.until = now.Add(unreachableWait(u.fails))
	sw.unreachable[id] = u
}

// cooling reports whether id failed to connect lately.
func (sw *swarm) cooling(id string, now time.Time) bool {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	u, ok := sw.unreachable[id]
	return ok && now.Before(u.until)
}

// ban keeps a peer that sent corrupt bytes out of this swarm for good.
func (sw *swarm) ban(id string) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.banned == nil {
		sw.banned = map[string]bool{}
	}
	sw.banned[id] = true
}

// connectTimeout frees the slot of a peer that never answers or never
// connects (it may be full, gone, or unreachable).
const connectTimeout = 8 * time.Second

// setup wires a new peer connection's callbacks: trickle our candidates to
// the peer, and drop the peer when the connection fails or never opens.
// It counts the outcome: opened, or negotiated and never connected (ICE or
// DTLS failed, or timed out: NAT and firewalls). A peer that never answered
// (full, gone) or a connection closed for another reason counts as neither.
func (sw *swarm) setup(ctx context.Context, c *signaling.Client, r *remote) {
	id := sw.id
	timeout := connectTimeout
	if d := sw.a.cfg.connectTimeout; d > 0 {
		timeout = d
	}
	go func() {
		t := time.NewTimer(timeout)
		defer t.Stop()
		if r.outgoing {
			defer sw.dialSettled()
		}
		select {
		case <-r.opened:
			sw.a.stats.peersConnected.Add(1)
		case <-r.closed:
			if r.gone.Load() && r.negotiated() {
				sw.failed(r.id, time.Now())
			}
		case <-t.C:
			if r.negotiated() {
				sw.failed(r.id, time.Now())
			}
			r.close()
		}
	}()
	r.pc.OnICECandidate(func(cand string) {
		if cand == "" {
			r.gatheringEnded()
		}
		if isTCPCandidate(cand) || !r.trickles() {
			return // candidate.go: not over TCP; in the description while it has not gone out
		}
		if cand != "" {
			sw.a.stats.trickled.Add(1)
		}
		m := &signaling.Message{Type: signaling.TypeCandidate, Swarm: &id, To: r.id, OfferID: r.offerID, Candidate: cand}
		go c.Send(ctx, m)
	})
	r.pc.OnGone(func() {
		select {
		case <-r.closed: // closed here first (the agent left, or gave up): not the network's doing
		default:
			r.gone.Store(true)
		}
		r.close()
	})
}

// suggest dials the peers the tracker suggested, DialsAtOnce at a time
// (Config): the rest wait until an offer under way opens, fails or times
// out.
func (sw *swarm) suggest(ctx context.Context, c *signaling.Client, ids []string) {
	sw.mu.Lock()
	sw.dialCtx, sw.dialC = ctx, c
	for _, id := range ids {
		if !slices.Contains(sw.toDial, id) && len(sw.toDial) < maxToDial {
			sw.toDial = append(sw.toDial, id)
		}
	}
	sw.mu.Unlock()
	sw.dialMore()
}

// maxToDial bounds the peers waiting to be dialled (a tracker suggests at
// most a few dozen at a time).
const maxToDial = 64

// dialMore dials waiting peers while fewer than DialsAtOnce offers are
// under way (any number when it is 0).
func (sw *swarm) dialMore() {
	for {
		sw.mu.Lock()
		at := sw.a.cfg.DialsAtOnce
		if len(sw.toDial) == 0 || at > 0 && sw.dialling >= at {
			sw.mu.Unlock()
			return
		}
		id, ctx, c := sw.toDial[0], sw.dialCtx, sw.dialC
		sw.toDial = sw.toDial[1:]
		sw.mu.Unlock()
		if ctx.Err() == nil {
			sw.dial(ctx, c, id)
		}
	}
}

// dialSettled is called once an offer this agent made opened, failed or
// timed out: the next waiting peer may be dialled.
func (sw *swarm) dialSettled() {
	sw.mu.Lock()
	sw.dialling--
	sw.mu.Unlock()
	sw.dialMore()
}

// dial offers a connection to a suggested peer.
func (sw *swarm) dial(ctx context.Context, c *signaling.Client, peerID string) {
	if peerID == c.PeerID() || sw.count() >= sw.a.maxPeers() || sw.peer(peerID) != nil || sw.cooling(peerID, time.Now()) {
		return
	}
	pc, err := sw.a.newPC()
	if err != nil {
		sw.a.log.Debug("no peer connection", "err", err)
		return
	}
	r := newRemote(sw.a, sw, peerID, randomID(), pc)
	r.outgoing = true
	if !sw.reserve(r, false) {
		pc.Close()
		return
	}
	sw.mu.Lock()
	sw.dialling++ // until setup's watch ends (dialSettled)
	sw.dialPeak = max(sw.dialPeak, sw.dialling)
	sw.mu.Unlock()
	sw.setup(ctx, c, r)
	dc, err := pc.CreateDataChannel(peerwire.Label)
	if err != nil {
		r.close()
		return
	}
	r.attach(dc)
	offer, err := pc.CreateOffer()
	if err != nil {
		sw.a.log.Debug("offer", "err", err)
		r.close()
		return
	}
	sw.sendDescription(ctx, c, r, signaling.TypeOffer, offer)
}

// sendDescription sends r this side's offer or answer (created, as
// CreateOffer or CreateAnswer returned it) with the candidates gathered
// meanwhile (candidate.go), and closes r if it cannot.
func (sw *swarm) sendDescription(ctx context.Context, c *signaling.Client, r *remote, typ signaling.Type, created string) {
	id := sw.id
	go func() {
		m := &signaling.Message{Type: typ, Swarm: &id, To: r.id, OfferID: r.offerID, SDP: r.describe(created)}
		if err := c.Send(ctx, m); err != nil {
			r.close()
		}
	}()
}

// accept answers a peer's offer when there is a free slot.
func (sw *swarm) accept(ctx context.Context, c *signaling.Client, m *signaling.Message) {
	if old := sw.peer(m.From); old != nil {
		// Both offered at once: the smaller peer id's offer wins.
		if c.PeerID() < m.From || old.connected() {
			return
		}
		old.close()
	}
	if sw.count() >= sw.a.maxIncoming() {
		return // full: the offerer's connect timeout frees its slot
	}
	if sw.cooling(m.From, time.Now()) {
		return // it failed to connect lately: the offerer times out too
	}
	pc, err := sw.a.newPC()
	if err != nil {
		return
	}
	r := newRemote(sw.a, sw, m.From, m.OfferID, pc)
	if !sw.reserve(r, true) {
		pc.Close()
		return
	}
	sw.setup(ctx, c, r)
	pc.OnDataChannel(func(dc dataChannel) {
		if dc.Label() != peerwire.Label {
			dc.Close()
			return
		}
		r.attach(dc)
	})
	if err := r.setRemote(true, m.SDP); err != nil {
		sw.a.log.Debug("remote offer", "err", err)
		r.close()
		return
	}
	answer, err := pc.CreateAnswer()
	if err != nil {
		r.close()
		return
	}
	sw.sendDescription(ctx, c, r, signaling.TypeAnswer, answer)
}

func (sw *swarm) answered(m *signaling.Message) {
	r := sw.peer(m.From)
	if r == nil || r.offerID != m.OfferID {
		return
	}
	if err := r.setRemote(false, m.SDP); err != nil {
		sw.a.log.Debug("remote answer", "err", err)
		r.close()
	}
}

// best returns the connected peer holding seq with the best measured
// throughput (untried peers count as average), or nil.
func (sw *swarm) best(seq uint64, exclude map[*remote]bool) *remote {
	return sw.fastest(exclude, func(r *remote) bool { return r.holds(seq) })
}

// receiving returns a connected peer that said it is loading seq (from the
// CDN or a peer), chosen as best does, or nil: it passes the segment on as
// it arrives (inflight.go).
func (sw *swarm) receiving(seq uint64, exclude map[*remote]bool) *remote {
	return sw.fastest(exclude, func(r *remote) bool { return r.isLoading(seq) })
}

// holderBesides is best, leaving out except as well as the peers tried.
func (sw *swarm) holderBesides(seq uint64, tried map[*remote]bool, except *remote) *remote {
	return sw.fastest(tried, func(r *remote) bool { return r != except && r.holds(seq) })
}

// fastest returns the connected peer with the best measured throughput
// among those not excluded for which ok holds, or nil.
func (sw *swarm) fastest(exclude map[*remote]bool, ok func(*remote) bool) *remote {
	var best *remote
	bestRate := -1.0
	for _, r := range sw.connected() {
		if exclude[r] || !ok(r) {
			continue
		}
		rt := r.rate()
		if rt == 0 {
			rt = 1 // untried: above a failed peer, below any measured one
		}
		if rt > bestRate {
			best, bestRate = r, rt
		}
	}
	return best
}

// loadingCount counts the connected peers fetching seq from the CDN now.
func (sw *swarm) loadingCount(seq uint64) int {
	n := 0
	for _, r := range sw.connected() {
		if r.isLoading(seq) {
			n++
		}
	}
	return n
}

// elected reports whether this agent should fetch seq from the CDN at once
// for its neighbourhood: it ranks among the first q of itself and its
// connected peers by a hash of (peer id, seq), where q is the tracker's
// hash quorum (1 without integrity): q independent CDN copies make a hash
// trusted. Viewers that seed (seeding.go) rank before those that do not,
// which are elected only where too few seed. In a full mesh exactly q
// viewers are elected per segment; elsewhere a few more are, and everyone
// else waits for them and gets the segment over P2P.
func (sw *swarm) elected(self string, seq uint64) bool {
	return sw.inLine(self, seq) < sw.quorum()
}

// inLine counts the connected peers that rank before this agent for seq,
// in the order elected uses.
func (sw *swarm) inLine(self string, seq uint64) int {
	mine, iSeed := rank(self, seq), sw.a.seeds()
	ahead := 0
	for _, r := range sw.connected() {
		if theySeed := r.seeds(); theySeed && !iSeed || theySeed == iSeed && rank(r.id, seq) < mine {
			ahead++
		}
	}
	return ahead
}

// firstWordWait is how long a load holds its choice of seeding a segment
// from the CDN (elected, or taking over) while a peer whose channel has
// just opened has not sent its first word, the have list (firstWord): that
// peer most likely holds the segment. A late joiner's load waiting for
// its first peer otherwise woke as the channel opened, found no holder,
// ranked first among itself and that one peer, and fetched the CDN's copy
// with the holder's list on its way: in three VOD runs of the field
// harness, 5 of the 15 viewers after the first did so for their third
// segment (none in two runs since). The load's own deadline still bounds
// the wait.
const firstWordWait = time.Second

// hearingUntil is when the last connected peer not heard from yet stops
// being waited for (firstWordWait); zero when there is none.
func (sw *swarm) hearingUntil() time.Time {
	var until time.Time
	for _, r := range sw.connected() {
		r.mu.Lock()
		if !r.heard {
			if t := r.openedAt.Add(firstWordWait); t.After(until) {
				until = t
			}
		}
		r.mu.Unlock()
	}
	return until
}

// takeoverStep is how much longer each viewer further down the line for a
// segment waits, after its player asked, before it takes over seeding the
// segment that no peer holds or is loading. The elected viewer's player
// asks when its own playlist shows the segment: live players refresh their
// playlists out of phase, up to a target duration (2-6 s) apart, so the
// first to ask is rarely the one elected. Those that asked first waited for
// it until their reserve point, and each then fetched its own copy from
// the CDN (3-5 copies of a segment on a CDN at 1.2 Mbit/s). Staggered by
// place in line, the first to ask takes over and announces it; the others
// see that and wait for its copy. The step is more than a peer's one-way
// latency (10-75 ms), so that the announcement of one taking over reaches
// the next in line first; it is short, since on a slow CDN the copy has to
// arrive before the reserve points of those waiting for it (with 300 ms,
// the first to ask, fourth in line, went to the CDN itself at its reserve
// point, before the copy of the one taking over had arrived).
const takeoverStep = 100 * time.Millisecond

// takeoverAfter is this agent's place in line (inLine) after the elected
// viewers, times takeoverStep (Agent.takeoverAt); 0 or less when it does
// not take over (it is elected, or does not seed).
func (sw *swarm) takeoverAfter(place int) time.Duration {
	if !sw.a.seeds() {
		return 0
	}
	return time.Duration(place-sw.quorum()+1) * takeoverStep
}

// quorum is how many CDN copies of a segment the neighbourhood needs: the
// tracker's hash quorum under quorum integrity, else one (the origin's
// manifest or the tracker's notary vouches for that one).
func (sw *swarm) quorum() int {
	if sw.hasManifest.Load() || sw.a.integrityMode() != signaling.IntegrityQuorum {
		return 1
	}
	return max(1, int(sw.a.quorum.Load()))
}

func rank(id string, seq uint64) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	h.Write(b[:])
	// FNV alone barely moves its high bits when only the last bytes
	// change: without this finalizer (murmur3's fmix64) the same viewer
	// won the election for runs of consecutive segments.
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func randomID() string { return rand.Text()[:16] }
