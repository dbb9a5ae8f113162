package tracker

import (
	"crypto/rand"
	"errors"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/peercdn/peercdn/tracker/wsconn"
	"golang.org/x/time/rate"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/cluster"
	"github.com/peercdn/peercdn/tracker/wtwire"
)

// conn is one agent's session: what its messages mean, its limits and its
// swarms. The WebSocket under it (wsconn) reads, queues and writes; conn is
// its Handler.
type conn struct {
	s      *Server
	t      *wsconn.Conn
	ip     string
	group  string // network group of ip, for matching (proximity.go)
	origin string
	ipe    *ipEntry
	host   string // the host the client reached the tracker at, if plain

	limiter *rate.Limiter
	strikes int // decaying: see strikeDecay
	// decayFrom is when the next forgiven strike started counting down.
	decayFrom time.Time
	// notaryBudget bounds the notary fetches this viewer's reports start
	// (made on its first report).
	notaryBudget *rate.Limiter
	// quiet suppresses repeated rate_limited errors until a message passes.
	quiet bool

	peer     *peer   // nil until hello; owned by the reading goroutine
	wt       *wtConn // set on /announce sockets (WebTorrent protocol)
	welcomed atomic.Bool
	control  atomic.Bool // in the rollout's control cohort: no swarms
	// session is the agent's own id over reconnects (signaling.SessionParam),
	// "" if none; set before the connection is served.
	session string
	// cohortAt is when the rollout last moved this viewer (unix ns): the
	// first ping after carries what it got before, counted for the cohort
	// it left.
	cohortAt atomic.Int64
	timer    *time.Timer // handshake, then idle timeout
	usageAt  time.Time   // of the last usage report, or the welcome
	pingAt   time.Time   // of the last ping, or the welcome
}

func newConn(s *Server, nc net.Conn, prefix []byte, ip, origin string, ipe *ipEntry) *conn {
	c := &conn{
		s: s, ip: ip, origin: origin, ipe: ipe, group: s.groupOf(ip),
		limiter: rate.NewLimiter(rate.Limit(s.cfg.MessagesPerSecond), s.cfg.MessageBurst),
	}
	c.t = wsconn.New(nc, prefix, c, &s.transport)
	return c
}

// start serves c on a goroutine of its own; done runs once it is over.
func (c *conn) start(done func()) {
	c.timer = time.AfterFunc(c.s.cfg.HandshakeTimeout, func() {
		if !c.welcomed.Load() {
			c.s.m.rejects.WithLabelValues("handshake_timeout").Inc()
			c.close(wsconn.StatusPolicyViolation, "no hello within the handshake timeout")
			return
		}
		c.s.m.rejects.WithLabelValues("idle_timeout").Inc()
		c.close(wsconn.StatusPolicyViolation, "idle timeout: send a ping every heartbeat_ms")
	})
	c.t.Start(done)
}

// Ended leaves every swarm (wsconn.Handler): the connection is over.
func (c *conn) Ended() {
	c.timer.Stop()
	if c.wt != nil {
		c.s.wtClusterLeave(c.s.wt.leave(c), c.group)
	}
	if c.peer != nil {
		c.s.clusterLeave(c.peer, c.s.hub.remove(c.peer))
	}
}

// Message handles one message (wsconn.Handler); false ends the connection.
func (c *conn) Message(text bool, b []byte) bool {
	if c.welcomed.Load() {
		c.timer.Reset(c.idleTimeout())
	}
	return c.handleFrame(text, b)
}

// strikeDecay forgives one strike per this long without one: mistakes an
// honest agent makes now and then (a relay to a peer that has just left a
// churny swarm) never add up to max_strikes, while a burst still does.
const strikeDecay = 10 * time.Second

// decayStrikes forgives one of strikes per strikeDecay since from, and
// returns what is left and when the next forgiveness started counting; a
// burst within strikeDecay counts in full.
func decayStrikes(strikes int, from, now time.Time) (int, time.Time) {
	return forgive(strikes, from, now, strikeDecay)
}

// Ping reports whether a client's ping may be answered (wsconn.Handler).
// Pings count against the connection's message rate like any message: past
// it they go unanswered and are a strike, so a ping flood is closed like a
// message flood.
func (c *conn) Ping() bool {
	if !c.limiter.Allow() {
		c.strike("ping_rate")
		return false
	}
	return true
}

// idleTimeout is how long the connection may stay silent once welcomed.
func (c *conn) idleTimeout() time.Duration {
	if c.wt != nil {
		return 2*c.s.cfg.AnnounceInterval + c.s.cfg.IdleTimeout/2
	}
	return c.s.cfg.IdleTimeout
}

// handleFrame processes one frame; false ends the connection.
func (c *conn) handleFrame(text bool, b []byte) bool {
	if !c.limiter.Allow() || !c.ipe.limiter.Allow() {
		if !c.quiet {
			c.sendError(signaling.CodeRateLimited, "", "over messages_per_second: slow down")
			c.quiet = true
		}
		return c.strike(signaling.CodeRateLimited)
	}
	c.quiet = false
	if c.wt != nil {
		if !text {
			c.send(wtwire.Failure("binary frames are not part of the protocol", ""))
			return c.strike("wt_bad_message")
		}
		return c.handleWT(b)
	}
	if !text {
		c.sendError(signaling.CodeBadMessage, "", "binary frames are not part of the protocol")
		return c.strike(signaling.CodeBadMessage)
	}
	m, err := signaling.Decode(b)
	if err != nil {
		c.sendError(signaling.CodeBadMessage, signaling.RefOf(b), err.Error())
		return c.strike(signaling.CodeBadMessage)
	}
	if c.peer == nil {
		return c.hello(m)
	}
	c.s.m.messages.WithLabelValues(string(m.Type)).Inc()
	now := time.Now()
	switch m.Type {
	case signaling.TypeJoin:
		c.join(m, now)
	case signaling.TypeLeave:
		if code := c.s.hub.leave(c.peer, c.key(m)); code != "" {
			c.sendError(code, m.Ref, "not in that swarm")
			break
		}
		c.s.clusterLeave(c.peer, []cluster.Key{c.key(m)})
	case signaling.TypePeers:
		k := c.key(m)
		var remote []cluster.Member
		if c.s.hub.isMember(c.peer, k) {
			remote = c.s.clusterJoin(c.peer, k, false)
		}
		ids, code := c.s.hub.suggest(c.peer, k, now, remote)
		if code != "" {
			c.sendError(code, m.Ref, "join the swarm first")
			break
		}
		c.sendMsg(&signaling.Message{Type: signaling.TypePeers, Ref: m.Ref, Swarm: m.Swarm, Peers: ids})
	case signaling.TypeOffer, signaling.TypeAnswer, signaling.TypeCandidate:
		c.relay(m, now)
	case signaling.TypeHash:
		c.hash(m)
	case signaling.TypeReport:
		c.report(m)
	case signaling.TypePing:
		if m.Slots != nil {
			c.s.hub.setSlots(c.peer, *m.Slots)
		}
		if m.Usage != nil && !c.usage(m.Usage, now) {
			c.sendError(signaling.CodeBadMessage, m.Ref, "usage: more than the time since the last report allows")
			return c.strike(signaling.CodeBadMessage)
		}
		c.pingAt = now
		c.sendMsg(&signaling.Message{Type: signaling.TypePong, Ref: m.Ref})
	case signaling.TypeHello:
		c.sendError(signaling.CodeHelloFirst, m.Ref, "hello was already said")
		return c.strike(signaling.CodeHelloFirst)
	default:
		c.sendError(signaling.CodeBadMessage, m.Ref, "agents do not send "+string(m.Type))
		return c.strike(signaling.CodeBadMessage)
	}
	return true
}

// strike counts a bad or excess message; past max_strikes the connection is
// closed with 1008.
func (c *conn) strike(code signaling.Code) bool {
	c.s.m.rejects.WithLabelValues(string(code)).Inc()
	c.strikes, c.decayFrom = decayStrikes(c.strikes, c.decayFrom, time.Now())
	c.strikes++
	if c.strikes >= c.s.cfg.MaxStrikes {
		if !c.t.Closing() {
			c.s.penalties.closed(c.ip, time.Now())
		}
		c.s.m.rejects.WithLabelValues("strikes").Inc()
		c.close(wsconn.StatusPolicyViolation, "too many bad or rate-limited messages")
		return false
	}
	return true
}

func (c *conn) hello(m *signaling.Message) bool {
	if m.Type != signaling.TypeHello {
		c.s.m.rejects.WithLabelValues(string(signaling.CodeHelloFirst)).Inc()
		c.sendError(signaling.CodeHelloFirst, m.Ref, "the first message must be hello")
		c.close(wsconn.StatusProtocolError, "the first message must be hello")
		return false
	}
	if m.V < signaling.MinVersion || m.V > signaling.Version {
		c.s.m.rejects.WithLabelValues(string(signaling.CodeUnsupportedVersion)).Inc()
		c.sendError(signaling.CodeUnsupportedVersion, m.Ref, "this tracker speaks protocol versions 1..1")
		c.close(wsconn.StatusProtocolError, "unsupported protocol version")
		return false
	}
	c.s.m.messages.WithLabelValues(string(m.Type)).Inc()
	// The node's id, then 128 random bits: unguessable, never chosen by the
	// client, and any node can tell where to relay to.
	p := newPeer(c.s.hub.node+rand.Text(), c)
	p.group = c.group
	if m.Slots != nil {
		p.slots = *m.Slots
	}
	c.peer = p
	c.welcomed.Store(true)
	c.usageAt = time.Now()
	c.pingAt = c.usageAt
	c.timer.Reset(c.s.cfg.IdleTimeout)
	c.s.setCohort(c, p, func(control bool) {
		var p2p *bool
		if control {
			p2p = p2pOn(control) // omitted when on: what older agents assume
		}
		c.welcome(m.Ref, p.id, p2p)
	})
	return true
}

func (c *conn) welcome(ref, id string, p2p *bool) {
	c.sendMsg(&signaling.Message{
		Type: signaling.TypeWelcome, Ref: ref, V: signaling.Version, PeerID: id, P2P: p2p,
		ICEServers:  c.iceServers(id),
		AllowRelay:  c.s.cfg.AllowRelay,
		HeartbeatMs: int(c.s.cfg.IdleTimeout / 3 / time.Millisecond),
		Limits: &signaling.Limits{
			MaxMessageBytes:   c.s.cfg.MaxMessageBytes,
			MaxSwarms:         c.s.cfg.MaxSwarmsPerConn,
			MessagesPerSecond: c.s.cfg.MessagesPerSecond,
			Suggestions:       c.s.cfg.Suggestions,
			HashQuorum:        c.s.cfg.HashQuorum,
			Integrity:         c.s.integrityAnnounced(),
			HashManifests:     c.s.cfg.HashManifests,
		},
	})
}

func (c *conn) key(m *signaling.Message) cluster.Key {
	return cluster.Key{Origin: c.origin, Swarm: *m.Swarm}
}

func (c *conn) join(m *signaling.Message, now time.Time) {
	if c.s.draining.Load() {
		c.reply(signaling.CodeDraining, m.Ref, "node draining: reconnect to another node")
		return
	}
	if len(c.s.secret) > 0 {
		switch err := VerifyToken(c.s.secret, m.Token, m.Swarm.Content, now); {
		case errors.Is(err, ErrTokenExpired):
			c.reply(signaling.CodeTokenExpired, m.Ref, "join token expired: get a fresh one from the site")
			return
		case err != nil:
			c.reply(signaling.CodeBadToken, m.Ref, "join token missing or not valid for this content")
			return
		}
	}
	if c.control.Load() {
		c.reply(signaling.CodeP2POff, m.Ref, "P2P is off for this viewer (the operator's rollout): load from the CDN only")
		return
	}
	if m.Slots != nil {
		c.s.hub.setSlots(c.peer, *m.Slots)
	}
	k := c.key(m)
	code := c.s.hub.join(c.peer, k)
	if code == "" && c.control.Load() {
		// The rollout moved this viewer to the control cohort while it
		// joined, after applyRollout took it out of its swarms.
		c.s.hub.leave(c.peer, k)
		code = signaling.CodeP2POff
	}
	var ids []string
	if code == "" {
		remote := c.s.clusterJoin(c.peer, k, true)
		ids, code = c.s.hub.suggest(c.peer, k, time.Now(), remote)
	}
	if code != "" {
		text := map[signaling.Code]string{
			signaling.CodeTooManySwarms: "in max_swarms swarms already: leave one first",
			signaling.CodeSwarmFull:     "swarm is full: load from the CDN only",
			signaling.CodeBanned:        "removed from this swarm: peers reported corrupt segments from you",
			signaling.CodeP2POff:        "P2P is off for this viewer (the operator's rollout): load from the CDN only",
		}[code]
		c.reply(code, m.Ref, text)
		return
	}
	c.sendMsg(&signaling.Message{Type: signaling.TypePeers, Ref: m.Ref, Swarm: m.Swarm, Peers: ids})
	for _, h := range c.s.hub.recent(k) {
		c.sendMsg(h)
	}
}

// hash takes a viewer's report of a segment's SHA-256 as the CDN served it.
func (c *conn) hash(m *signaling.Message) {
	seg, err := strconv.ParseUint(m.Segment, 10, 64)
	if err == nil && m.SHA256 == "" && m.URL != "" {
		// An announcement: the agent is fetching this segment from the
		// CDN now. The notary starts its own fetch at once rather than
		// after the agent's report: on a slow CDN the hash otherwise came
		// two fetch times after the segment appeared, too late for the
		// swarm's live deadlines.
		if c.s.cfg.Integrity == IntegrityNotary {
			c.notaryHash(m, seg)
		}
		return
	}
	if err == nil && m.SHA256 == "" {
		// A query: what is vouched for this segment. A VOD viewer starts
		// at the title's beginning, far behind the last hashes a join
		// brings, and took those segments from the CDN for want of one.
		hs, code := c.s.hub.vouched(c.peer, c.key(m), seg)
		if code != "" {
			c.reply(code, m.Ref, "join the swarm first")
		}
		for _, h := range hs {
			c.sendMsg(h)
		}
		return
	}
	if err != nil || !validHash(m.SHA256) {
		c.reply(signaling.CodeBadMessage, m.Ref, "bad segment or sha256")
		return
	}
	switch c.s.cfg.Integrity {
	case IntegrityNotary:
		c.notaryHash(m, seg)
	case IntegrityQuorum:
		c.quorumHash(m, seg)
	}
}

// notaryHash judges a report by the notary's own fetch from the same CDN
// origin, starting that fetch if this is the first report (integrity.go).
func (c *conn) notaryHash(m *signaling.Message, seg uint64) {
	src, named := sourceOf(m, seg)
	if m.URL != "" && !named {
		// A URL (or range) that is not this segment's: reported as is, the
		// notary would vouch for other bytes under this number.
		c.s.m.rejects.WithLabelValues("hash_wrong_url").Inc()
		c.reply(signaling.CodeBadMessage, m.Ref, "url and range do not name segment "+m.Segment)
		return
	}
	cdn, ok := signaling.CDNOrigin(m.URL)
	if !ok || !c.s.hub.notaryAllows(m.URL) {
		// Nothing the notary may fetch: the report cannot vouch for
		// anything, and is no evidence against the viewer either.
		c.s.m.rejects.WithLabelValues("notary_refused").Inc()
		return
	}
	k := c.key(m)
	if c.notaryBudget == nil {
		c.notaryBudget = rate.NewLimiter(notaryStartsPerSecond, notaryStartBurst)
	}
	now := time.Now()
	v, code := c.s.hub.notaryReport(c.peer, k, seg, cdn, m.SHA256, c.notaryBudget.TokensAt(now) >= 1, now)
	switch {
	case code != "":
		c.reply(code, m.Ref, "join the swarm first")
	case v == notaryStart:
		c.notaryBudget.AllowN(now, 1)
		if !c.s.startNotary(notaryJob{k: k, seg: seg, src: src, cdn: cdn}) {
			c.s.hub.notaryFailed(k, seg, cdn, now.Add(-notaryRetry))
		}
	case v == notaryLie:
		// The CDN serves other bytes at that URL's origin: a liar, or a
		// viewer whose copy was damaged. Either way it must not share.
		c.s.m.rejects.WithLabelValues("hash_mismatch").Inc()
		c.s.hub.banFromSwarm(c.peer, k)
		c.s.evict(k, []*peer{c.peer}, "reported a segment hash the CDN does not serve")
	}
}

// quorumHash counts a report toward the quorum; one that completes it is
// pushed to every member of the swarm on this node.
func (c *conn) quorumHash(m *signaling.Message, seg uint64) {
	k := c.key(m)
	accepted, lie, code := c.s.hub.reportHash(c.peer, k, seg, m.SHA256)
	if code == "" && !lie {
		c.s.clusterVote(c.peer, k, m)
	}
	switch {
	case code != "":
		c.reply(code, m.Ref, "join the swarm first")
	case lie:
		// Against a hash the quorum agreed on: a lie, a corrupt copy, or
		// evidence against the quorum. Not a strike (the quorum can be the
		// liar); the notary, where configured, settles it.
		c.s.m.rejects.WithLabelValues("hash_mismatch").Inc()
	case accepted != "":
		c.s.pushHash(k, seg, accepted, "")
	case len(c.s.cfg.NotaryCDNs) > 0:
		src, named := sourceOf(m, seg) // a URL naming another segment is not used
		if !named {
			src = signaling.Source{}
		}
		if src = c.s.hub.contested(k, seg, src); src.URL != "" {
			c.s.startNotary(notaryJob{k: k, seg: seg, src: src})
		}
	}
}

// pushHash tells every member of k on this node that seg's hash is
// vouched for (at CDN origin cdn, or anywhere when cdn is empty).
func (s *Server) pushHash(k cluster.Key, seg uint64, sum, cdn string) {
	b, err := signaling.Encode(hashMessage(k, seg, sum, cdn))
	if err != nil {
		return
	}
	for _, p := range s.hub.membersOf(k) {
		p.conn.send(b)
	}
}

// report takes a viewer's complaint that a peer sent corrupt bytes.
func (c *conn) report(m *signaling.Message) {
	k := c.key(m)
	removed, code := c.s.hub.reportPeer(c.peer, k, m.To)
	if code != "" {
		c.reply(code, m.Ref, "cannot report "+truncate(m.To, 40))
		return
	}
	if removed != nil {
		c.s.clusterLeave(removed, []cluster.Key{k})
		removed.conn.reply(signaling.CodeBanned, "", "removed from "+k.Swarm.String()+": peers reported corrupt segments from you")
	}
}

// reply sends an error for a refused request and counts it.
func (c *conn) reply(code signaling.Code, ref, text string) {
	c.s.m.rejects.WithLabelValues(string(code)).Inc()
	c.sendError(code, ref, text)
}

func (c *conn) relay(m *signaling.Message, now time.Time) {
	k := c.key(m)
	target, node, code := c.s.hub.route(c.peer, k, m.Type, m.To, m.OfferID, now)
	if code != "" {
		text := "cannot relay " + string(m.Type) + " to " + truncate(m.To, 40)
		if code == signaling.CodeUnknownOffer {
			// An answer or candidate for an offer that expired, or that
			// a flood of others pushed out of this peer's table, is no
			// fault of the sender; the message rate still bounds it.
			c.reply(code, m.Ref, text)
			return
		}
		// Relaying to strangers is how floods look: it counts as a strike.
		c.sendError(code, m.Ref, text)
		c.strike(code)
		return
	}
	if target == nil {
		if code := c.s.clusterRelay(c.peer, node, k, m, now); code != "" {
			c.reply(code, m.Ref, "peer "+truncate(m.To, 40)+" is on a node this one cannot reach now")
		}
		return
	}
	out := &signaling.Message{Type: m.Type, Swarm: m.Swarm, From: c.peer.id, OfferID: m.OfferID,
		SDP: m.SDP, Candidate: m.Candidate}
	b, err := signaling.Encode(out)
	if err != nil {
		c.reply(signaling.CodeInternal, m.Ref, "encode failed")
		return
	}
	target.conn.t.SendRelayed(b, now)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (c *conn) sendError(code signaling.Code, ref, text string) {
	c.sendMsg(signaling.ErrorMessage(code, ref, text))
}

func (c *conn) sendMsg(m *signaling.Message) {
	b, err := signaling.Encode(m)
	if err != nil {
		c.s.log.Error("encode", "type", m.Type, "err", err)
		return
	}
	c.t.Send(b)
}

// send queues an encoded message for the client.
func (c *conn) send(b []byte) { c.t.Send(b) }

func (c *conn) goAway(retryMs int) {
	c.sendMsg(&signaling.Message{Type: signaling.TypeGoAway, Text: "node draining", RetryMs: retryMs})
}

// close ends the connection with a close code, after the frames already
// queued (the error that explains it) have been written. It never blocks its
// caller, which may be another connection's goroutine.
func (c *conn) close(code wsconn.StatusCode, reason string) {
	c.t.Close(code, reason)
}
