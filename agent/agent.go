// Package agent is the viewer's peer logic, the same code natively and in
// the browser (GOOS=js GOARCH=wasm): it keeps a tracker connection, connects
// to peers of the swarms it plays, exchanges segments with them over WebRTC
// data channels, and decides per segment between a peer and the CDN so that
// playback is never worse than the CDN alone.
package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/peercdn/peercdn/peerwire"
	"github.com/peercdn/peercdn/signaling"
)

// Agent is one viewer. Create it with New, run it with Run, ask it for
// segments with Load; every method is safe for concurrent use.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	api   rtcAPI
	cache *cache
	stats counters
	// stalledUploads counts uploads held by Config.uploadStallFirst.
	stalledUploads atomic.Int64
	up             *rate.Limiter // the upload cap (rate.Inf: none)
	// uplink admits peers' requests by what the link drains (uplink.go).
	uplink  uplink
	seeding seeding // whether this viewer seeds (seeding.go)
	live    liveConfig
	// inflightState: segments arriving from peers, passed on as they
	// arrive (inflight.go); lastSize, the last stored segment's size.
	inflightState
	lastSize atomic.Int64

	pcCreated   atomic.Int64
	prefetching atomic.Bool
	cdnRate     atomic.Int64 // bytes/s moving average of CDN fetches
	cdnRTT      atomic.Int64 // ns moving average of time to first byte
	segSize     atomic.Int64 // bytes moving average of CDN segments
	// waitPays: of loads that waited for peers, the share (per mille, a
	// moving average) that got the segment from one (patience).
	waitPays    atomic.Int64
	quorum      atomic.Int64 // the tracker's hash quorum (quorum integrity)
	mode        atomic.Value // string: the tracker's Limits.Integrity
	manifestsOn atomic.Bool  // the tracker's Limits.HashManifests
	flushes     atomic.Int64 // Flush calls, for their refs
	// p2pOff: the tracker put this viewer in its rollout's control cohort
	// (welcome or policy p2p false): CDN only, no swarms.
	p2pOff atomic.Bool
	// trackerURL is Config.TrackerURL with this agent's session
	// (signaling.SessionParam): the tracker keeps its rollout cohort over
	// reconnects.
	trackerURL string

	trust     *trust
	manifests manifests

	askMu sync.Mutex
	asked map[segKey]time.Time // hash queries sent (askHash)

	mu     sync.Mutex
	sig    *signaling.Client // nil while disconnected
	ice    []signaling.ICEServer
	relay  bool // TURN relays allowed this session (see relay.go)
	swarms map[signaling.Swarm]*swarm
}

// New checks cfg and builds an agent; nothing touches the network until Run.
func New(cfg Config) (*Agent, error) {
	cfg.fill()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:    cfg,
		log:    cfg.Log.With("component", "agent"),
		api:    newAPI(&cfg),
		cache:  newCache(cfg.CacheBytes),
		swarms: make(map[signaling.Swarm]*swarm),
		trust:  newTrust(),
	}
	sep := "?"
	if strings.Contains(cfg.TrackerURL, "?") {
		sep = "&"
	}
	a.trackerURL = cfg.TrackerURL + sep + signaling.SessionParam + "=" + rand.Text()
	a.initLive()
	a.waitPays.Store(1000) // waiting pays until shown otherwise
	return a, nil
}

// Stats returns the counters.
func (a *Agent) Stats() Stats {
	s := Stats{
		Control:         a.p2pOff.Load(),
		CDNBytes:        a.stats.cdn.Load(),
		P2PBytes:        a.stats.p2p.Load(),
		UploadBytes:     a.stats.up.Load(),
		PeerConnections: int(a.pcCreated.Load()),
		Segments:        int(a.stats.segments.Load()),
		P2PFailures:     a.stats.failures.Load(),
		Prefetched:      a.stats.prefetched.Load(),
		Corrupt:         a.stats.corrupt.Load(),
		Flooders:        a.stats.flooders.Load(),
		UploadsRefused:  a.stats.uploadsRefused.Load(),
		P2PWastedBytes:  a.stats.wasted.Load(),
		PeersConnected:  a.stats.peersConnected.Load(),
		PeersFailed:     a.stats.peersFailed.Load(),
	}
	// A viewer met in several swarms (video and audio renditions, say) is
	// one peer, however many connections it takes.
	a.mu.Lock()
	peers := map[string]struct{}{}
	for _, sw := range a.swarms {
		for _, r := range sw.connected() {
			peers[r.id] = struct{}{}
		}
	}
	a.mu.Unlock()
	s.Peers = len(peers)
	a.stats.mu.Lock()
	s.Stalls, s.StallMs = a.stats.stalls, a.stats.stallMs
	a.stats.mu.Unlock()
	return s
}

// Segments returns the most recent per-segment records (up to 1,024).
func (a *Agent) Segments() []SegmentRecord {
	a.stats.mu.Lock()
	defer a.stats.mu.Unlock()
	return append([]SegmentRecord(nil), a.stats.records...)
}

// ReportPlayerCDN counts n segment bytes the player got from the CDN on its
// own (not through the agent) in what the tracker is told, so that its
// offload figures count every byte; Stats leaves them out.
func (a *Agent) ReportPlayerCDN(n int64) {
	if n <= 0 {
		return
	}
	a.stats.mu.Lock()
	a.stats.playerCDN += n
	a.stats.mu.Unlock()
}

// Flush sends what the player got since the last report to the tracker
// now, without waiting for the next heartbeat: for a page being hidden or
// closed, whose last heartbeat interval (up to 20 s of bytes) would
// otherwise be lost with the tab. The tracker acknowledges it as any
// report. It does nothing while disconnected (the report waits for the
// next connection) and never blocks on the network: browsers call it from
// their pagehide event.
func (a *Agent) Flush() {
	a.mu.Lock()
	c := a.sig
	a.mu.Unlock()
	if c == nil {
		return
	}
	ref := "f" + strconv.FormatInt(a.flushes.Add(1), 10)
	u := a.stats.usageNow(ref)
	if u == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c.Send(ctx, &signaling.Message{Type: signaling.TypePing, Ref: ref, Usage: u})
}

// ReportStall lets the player count a stall of d in the agent's stats.
func (a *Agent) ReportStall(d time.Duration) {
	a.stats.mu.Lock()
	a.stats.stalls++
	a.stats.stallMs += d.Milliseconds()
	a.stats.mu.Unlock()
}

func (a *Agent) emit(e Event) {
	if a.cfg.OnEvent != nil {
		a.cfg.OnEvent(e)
	}
}

func (a *Agent) waitUpload(ctx context.Context, n int) error {
	if a.up.Limit() == rate.Inf {
		return nil
	}
	if n > a.up.Burst() { // a cap set lower than a chunk meanwhile
		n = a.up.Burst()
	}
	return a.up.WaitN(ctx, n)
}

// Run keeps the tracker connection up until ctx ends, reconnecting with
// backoff (and after a goaway), and then closes every peer. Without a
// tracker URL it only waits: the agent then serves from the CDN alone.
func (a *Agent) Run(ctx context.Context) error {
	defer a.closeAll()
	if a.cfg.TrackerURL == "" {
		<-ctx.Done()
		return nil
	}
	backoff := 500 * time.Millisecond
	for {
		start := time.Now()
		retry, err := a.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > 30*time.Second {
			backoff = 500 * time.Millisecond
		}
		wait := retry
		if wait <= 0 {
			wait = jitter(backoff)
			backoff = min(2*backoff, 30*time.Second)
		}
		a.log.Debug("tracker connection ended", "err", err, "retry", wait)
		reason := "closed"
		if err != nil {
			reason = err.Error()
		}
		a.emit(Event{Kind: EventTrackerDown, Reason: reason, RetryMs: wait.Milliseconds()})
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func jitter(d time.Duration) time.Duration {
	var b [1]byte
	rand.Read(b[:])
	return d/2 + time.Duration(int64(d)/2*int64(b[0])/255)
}

// session runs one tracker connection; it returns the retry delay a goaway
// asked for.
func (a *Agent) session(ctx context.Context) (time.Duration, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := a.cfg.Dial(dctx, a.trackerURL, a.cfg.Origin)
	cancel()
	if err != nil {
		return 0, err
	}
	ice := a.cfg.ICEServers
	if ice == nil {
		ice = c.Welcome().ICEServers
	}
	relay := a.cfg.AllowRelay || c.Welcome().AllowRelay
	if !relay {
		ice = withoutTURN(ice)
	}
	if l := c.Welcome().Limits; l != nil {
		a.quorum.Store(int64(l.HashQuorum))
		a.mode.Store(l.Integrity)
		a.manifestsOn.Store(l.HashManifests)
	} else {
		a.quorum.Store(0)
		a.mode.Store("")
		a.manifestsOn.Store(false)
	}
	a.setP2P(c.Welcome().P2P == nil || *c.Welcome().P2P)
	a.emit(Event{Kind: EventTrackerUp})
	a.mu.Lock()
	a.sig = c
	a.ice = ice
	a.relay = relay
	joined := make([]*swarm, 0, len(a.swarms))
	for _, sw := range a.swarms {
		joined = append(joined, sw)
	}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.sig = nil
		a.mu.Unlock()
		c.CloseNow()
	}()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	conn := a.stats.open()
	go c.Keepalive(sctx, a.freeSlots, func(ref string) *signaling.Usage { return a.stats.usage(conn, ref) })
	// Reading takes a context of its own: a read whose context ends closes
	// the WebSocket, and the last report must still go out on it.
	rctx, rstop := context.WithCancel(context.WithoutCancel(sctx))
	defer rstop()
	var broken atomic.Bool // the connection failed under the agent
	closed := make(chan struct{})
	go func() {
		<-sctx.Done()
		// What the player got since the last ping, before the tracker
		// loses this viewer. Taken as counted once written: the reading
		// loop may have ended (goaway), so its pong may go unread, and a
		// tracker draining still counts it. Not on a broken connection:
		// a write into a dead socket can succeed and be lost; the bytes
		// wait for the next connection instead.
		if u := a.stats.usage(conn, "final"); u != nil && !broken.Load() {
			fctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if c.Send(fctx, &signaling.Message{Type: signaling.TypePing, Ref: "final", Usage: u}) == nil {
				a.stats.ack("final")
			}
			cancel()
		}
		c.CloseNow() // unblocks Recv
		close(closed)
	}()
	defer func() {
		stop()
		<-closed // the last report goes out before the connection closes
		a.stats.requeue()
	}()
	for _, sw := range joined {
		a.sendJoin(sctx, c, sw)
	}
	policies := 0
	go a.topUp(sctx, c)
	if adv := a.cfg.Adversary; adv != nil && adv.FloodRequests {
		go a.floodTracker(sctx, c)
	}
	for {
		m, err := c.Recv(rctx)
		if err != nil {
			broken.Store(true)
			return 0, err
		}
		switch m.Type {
		case signaling.TypePong:
			a.stats.ack(m.Ref)
		case signaling.TypeGoAway:
			return time.Duration(m.RetryMs) * time.Millisecond, errors.New("tracker draining")
		case signaling.TypePolicy:
			a.setP2P(*m.P2P)
			// Ping now, with a report if there is one: the tracker counts
			// what the first ping after the change carries for the cohort
			// the viewer leaves, and what comes after for the new one.
			policies++
			ref := "p" + strconv.Itoa(policies)
			go c.Send(sctx, &signaling.Message{Type: signaling.TypePing, Ref: ref, Usage: a.stats.usage(conn, ref)})
		case signaling.TypePeers:
			if sw := a.swarmFor(m.Swarm); sw != nil {
				sw.suggest(sctx, c, m.Peers)
			}
		case signaling.TypeOffer:
			if sw := a.swarmFor(m.Swarm); sw != nil {
				sw.accept(sctx, c, m)
			}
		case signaling.TypeAnswer:
			if sw := a.swarmFor(m.Swarm); sw != nil {
				sw.answered(m)
			}
		case signaling.TypeCandidate:
			if sw := a.swarmFor(m.Swarm); sw != nil {
				if r := sw.peer(m.From); r != nil && r.offerID == m.OfferID {
					r.addCandidate(m.Candidate)
				}
			}
		case signaling.TypeHash:
			a.learnHash(m)
		case signaling.TypeError:
			a.log.Debug("tracker error", "code", m.Code, "message", m.Text, "ref", m.Ref)
			a.stats.ack(m.Ref) // a refused report is answered too: not sent again
		}
	}
}

// topUp asks the tracker for more peers while a swarm has free slots.
func (a *Agent) topUp(ctx context.Context, c *signaling.Client) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		var want []*swarm
		for _, sw := range a.swarms {
			if sw.count() < a.maxPeers() {
				want = append(want, sw)
			}
		}
		a.mu.Unlock()
		for _, sw := range want {
			id := sw.id
			c.Send(ctx, &signaling.Message{Type: signaling.TypePeers, Swarm: &id})
		}
	}
}

// maxIncoming is how many peers a swarm accepts, counting offers it answers.
func (a *Agent) maxIncoming() int { return a.maxPeers() + (a.maxPeers()+1)/2 }

// freeSlots is what the agent tells the tracker it can still accept, in
// its fullest swarm, so that the tracker suggests peers with room.
func (a *Agent) freeSlots() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	free := a.maxIncoming()
	for _, sw := range a.swarms {
		free = min(free, a.maxIncoming()-sw.count())
	}
	return max(free, 0)
}

func (a *Agent) sendJoin(ctx context.Context, c *signaling.Client, sw *swarm) {
	token := ""
	if a.cfg.Token != nil {
		token = a.cfg.Token(sw.id.Content)
	}
	slots := max(0, a.maxIncoming()-sw.count())
	if err := c.Join(ctx, sw.id, token, slots); err != nil {
		a.log.Debug("join", "swarm", sw.id.String(), "err", err)
	}
}

// setP2P follows the tracker's rollout. Off, the agent drops its swarms
// and their peers (the tracker has taken it out of them) and loads from
// the CDN only, still reporting usage: the control cohort. On again, Load
// joins swarms as it needs them.
func (a *Agent) setP2P(on bool) {
	if a.p2pOff.Swap(!on) == !on {
		return
	}
	a.emit(Event{Kind: EventRollout, P2P: &on})
	if on {
		return
	}
	a.log.Info("P2P off by the tracker's rollout: CDN only")
	a.mu.Lock()
	dropped := make([]*swarm, 0, len(a.swarms))
	for k, sw := range a.swarms {
		dropped = append(dropped, sw)
		delete(a.swarms, k)
	}
	a.mu.Unlock()
	for _, sw := range dropped {
		sw.closeAll()
	}
}

// Join makes the agent a member of swarm s (Load does it on first use),
// unless the tracker's rollout has P2P off for it.
func (a *Agent) Join(s signaling.Swarm) {
	if a.p2pOff.Load() {
		return
	}
	a.mu.Lock()
	sw := a.swarms[s]
	if sw != nil {
		a.mu.Unlock()
		return
	}
	sw = newSwarm(a, s)
	a.swarms[s] = sw
	c := a.sig
	a.mu.Unlock()
	if c != nil {
		a.sendJoin(context.Background(), c, sw)
	}
}

// Leave closes a swarm's peers and leaves it.
func (a *Agent) Leave(s signaling.Swarm) {
	a.mu.Lock()
	sw := a.swarms[s]
	delete(a.swarms, s)
	c := a.sig
	a.mu.Unlock()
	if sw == nil {
		return
	}
	sw.closeAll()
	if c != nil {
		c.Leave(context.Background(), s)
	}
}

func (a *Agent) swarmFor(s *signaling.Swarm) *swarm {
	if s == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.swarms[*s]
}

// PeerID is the id the tracker gave this agent, or "" while disconnected.
func (a *Agent) PeerID() string { return a.selfID() }

func (a *Agent) selfID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sig == nil {
		return ""
	}
	return a.sig.PeerID()
}

// swarmList is the swarms joined now.
func (a *Agent) swarmList() []*swarm {
	a.mu.Lock()
	defer a.mu.Unlock()
	swarms := make([]*swarm, 0, len(a.swarms))
	for _, sw := range a.swarms {
		swarms = append(swarms, sw)
	}
	return swarms
}

func (a *Agent) closeAll() {
	for _, sw := range a.swarmList() {
		sw.closeAll()
	}
}

// newPC creates a peer connection within the lifetime cap.
func (a *Agent) newPC() (peerConn, error) {
	if a.pcCreated.Add(1) > int64(a.cfg.MaxPeerConnections) {
		a.pcCreated.Add(-1)
		return nil, fmt.Errorf("agent: %d peer connections created: lifetime cap reached", a.cfg.MaxPeerConnections)
	}
	a.mu.Lock()
	ice := a.ice
	a.mu.Unlock()
	return a.api.NewPeerConnection(ice)
}

// announce tells a swarm's peers what changed in the cache.
func (a *Agent) announce(s signaling.Swarm, flags uint8, seqs []uint64) {
	if a.consumeOnly() || len(seqs) == 0 {
		return
	}
	if sw := a.swarmFor(&s); sw != nil {
		sw.broadcast(peerwire.Have(flags, seqs))
	}
}

// Evict drops segments of a swarm that no player will ask for again (they
// fell out of a live playlist) and withdraws them from peers.
func (a *Agent) Evict(s signaling.Swarm, seqs ...uint64) {
	gone := a.cache.evict(s, seqs)
	for len(gone) > 0 {
		n := min(len(gone), peerwire.MaxHaveCount)
		a.announce(s, peerwire.HaveRemoved, gone[:n])
		gone = gone[n:]
	}
}

// store caches a whole segment and announces it; evicted ones are withdrawn.
func (a *Agent) store(k segKey, data []byte) {
	a.lastSize.Store(int64(len(data)))
	added, evicted := a.cache.put(k, data)
	if added {
		a.announce(k.swarm, peerwire.HaveAdd, []uint64{k.seq})
	}
	bySwarm := map[signaling.Swarm][]uint64{}
	for _, e := range evicted {
		bySwarm[e.swarm] = append(bySwarm[e.swarm], e.seq)
	}
	for s, seqs := range bySwarm {
		a.announce(s, peerwire.HaveRemoved, seqs)
	}
}
