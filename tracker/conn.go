package tracker

import (
	"bufio"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/time/rate"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/cluster"
	"github.com/peercdn/peercdn/tracker/wtwire"
)

// conn is one agent's WebSocket. A reading goroutine (one at a time, run)
// reads and dispatches while frames arrive; frames for it queue in a
// bounded slice that a writer goroutine drains, so a slow client never
// blocks the peers relaying to it. Each runs only while it has work: an
// idle connection holds no goroutine (on Linux) and no queue, which is
// most of what a node with 20k viewers holds.
type conn struct {
	s      *Server
	nc     net.Conn
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

	// Owned by the reading goroutine: the pooled reader (nil while parked),
	// bytes the client sent along with its upgrade request, and whether
	// the client's close frame has come.
	rd         *msgReader
	prefix     []byte
	peerClosed bool
	// failed: the client broke the protocol, and what it sends next
	// cannot be parsed as frames any more.
	failed atomic.Bool

	qmu     sync.Mutex
	queue   []frame
	queued  int  // payload bytes in queue
	writing bool // a writer goroutine is draining queue
	dead    bool // the writer is finished for good: frames are dropped
	writers sync.WaitGroup

	closeOnce sync.Once
	closing   atomic.Bool
	slow      atomic.Bool   // counted as a slow consumer once
	finished  chan struct{} // closed when the writer is finished for good

	done   func() // runs once the connection is over
	pollID uint64 // in the idle poller; guarded by its lock
	polled bool   // registered with the idle poller once
}

// frame is a queued outgoing message; relayed frames carry when they were
// read, for the relay latency histogram.
type frame struct {
	b    []byte
	read time.Time
	// op is a control frame's opcode (a pong, or a close, which ends the
	// writer after the frames queued before it); 0 is a text message.
	op ws.OpCode
}

func newConn(s *Server, nc net.Conn, ip, origin string, ipe *ipEntry) *conn {
	return &conn{
		s: s, nc: nc, ip: ip, origin: origin, ipe: ipe, group: s.groupOf(ip),
		limiter:  rate.NewLimiter(rate.Limit(s.cfg.MessagesPerSecond), s.cfg.MessageBurst),
		finished: make(chan struct{}),
	}
}

// start serves c on a goroutine of its own; done runs once it is over.
func (c *conn) start(done func()) {
	c.done = done
	c.timer = time.AfterFunc(c.s.cfg.HandshakeTimeout, func() {
		if !c.welcomed.Load() {
			c.s.m.rejects.WithLabelValues("handshake_timeout").Inc()
			c.close(ws.StatusPolicyViolation, "no hello within the handshake timeout")
			return
		}
		c.s.m.rejects.WithLabelValues("idle_timeout").Inc()
		c.close(ws.StatusPolicyViolation, "idle timeout: send a ping every heartbeat_ms")
	})
	// Nothing has been said yet: park at once (hello is usually on its way,
	// and the poller reports it), or wait for it on a goroutine.
	if !c.buffered() && c.s.idle.park(c) {
		return
	}
	go c.run()
}

// run reads a frame, and more while any are buffered, then parks the
// connection in the idle poller and returns: an idle connection holds no
// goroutine and no read buffer. The poller runs it again when bytes arrive,
// or when the connection is being closed. Where there is no poller (not
// Linux), it waits for the next frame on its goroutine.
func (c *conn) run() {
	if c.rd == nil {
		c.rd = readerPool.Get().(*msgReader)
		c.rd.br.Reset(c)
	}
	for {
		if c.closing.Load() || !c.readOne() {
			c.linger()
			c.finish()
			return
		}
		if !c.buffered() {
			// Nothing buffered: the reader can go back before parking (once
			// parked, the poller may start another goroutine at once).
			c.dropReader()
			if c.s.idle.park(c) {
				return
			}
			c.rd = readerPool.Get().(*msgReader)
			c.rd.br.Reset(c)
		}
	}
}

// buffered reports whether bytes already read from the socket wait to be
// handled. Bytes still in the socket need no check: the idle poller's
// registration is level-triggered and reports them at once.
func (c *conn) buffered() bool {
	return len(c.prefix) > 0 || (c.rd != nil && c.rd.br.Buffered() > 0)
}

func (c *conn) dropReader() {
	if c.rd != nil {
		c.rd.br.Reset(nil)
		readerPool.Put(c.rd)
		c.rd = nil
	}
}

// Read is the socket as the reader sees it: first the bytes the client
// sent along with its upgrade request, if any.
func (c *conn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		if c.prefix = c.prefix[n:]; len(c.prefix) == 0 {
			c.prefix = nil
		}
		return n, nil
	}
	return c.nc.Read(p)
}

// ending reports whether the connection is being closed.
func (c *conn) ending() bool {
	if c.closing.Load() {
		return true
	}
	c.qmu.Lock()
	defer c.qmu.Unlock()
	return c.dead
}

// closeWait bounds how long a closing connection waits for its client's
// close frame (the read deadline close sets).
const closeWait = 5 * time.Second

// linger completes a close handshake the tracker started: it reads and
// drops what the client still sends until its close frame, so that the
// socket is not closed with unread bytes in it (which would reset the
// connection and could lose our close frame on the way).
func (c *conn) linger() {
	if !c.closing.Load() || c.peerClosed {
		return
	}
	// A client that keeps sending after our close (a flood closed for
	// strikes does) gets lingerBytes read, not closeWait of reading: past
	// that the socket is closed, its close frame lost or not.
	if c.failed.Load() {
		// The writer half-closes after the close frame: a client reads it,
		// sees the end, and closes its side.
		io.Copy(io.Discard, io.LimitReader(c.rd.br, lingerBytes))
		return
	}
	buf := readPool.Get().(*[]byte)
	defer readPool.Put(buf)
	counted := &countingReader{r: c.rd.br, left: lingerBytes}
	rd := &msgReader{br: bufio.NewReaderSize(counted, 512)}
	for {
		_, b, err := rd.readMessage((*buf)[:0], c.s.cfg.MaxMessageBytes, func([]byte) bool { return true })
		if cap(b) <= maxPooledBatch {
			*buf = b[:0]
		}
		if err != nil {
			return // the close frame, an error, or close's read deadline
		}
	}
}

// lingerBytes bounds what a closing connection reads while it waits for its
// client's close frame.
const lingerBytes = 64 << 10

// countingReader reads from r until left bytes have been read.
type countingReader struct {
	r    io.Reader
	left int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// finish leaves every swarm and closes the connection, after the frames
// queued before a close.
func (c *conn) finish() {
	c.timer.Stop()
	if c.wt != nil {
		c.s.wtClusterLeave(c.s.wt.leave(c), c.group)
	}
	if c.peer != nil {
		c.s.clusterLeave(c.peer, c.s.hub.remove(c.peer))
	}
	if c.closing.Load() {
		// The close code and the frames queued before it get out first,
		// unless the writer already died on a write error.
		<-c.finished
	}
	c.setDead()
	c.writers.Wait()
	c.nc.Close()
	c.dropReader()
	c.done()
}

// readOne reads and handles one message; false ends the connection. The
// message is read into a pooled buffer: handlers copy what they keep
// (JSON decoding does), so it goes back after each message.
func (c *conn) readOne() bool {
	buf := readPool.Get().(*[]byte)
	op, b, err := c.rd.readMessage((*buf)[:0], c.s.cfg.MaxMessageBytes, c.pong)
	defer func() {
		if cap(b) <= maxPooledBatch {
			*buf = b[:0]
			readPool.Put(buf)
		}
	}()
	if err != nil {
		var fe *frameError
		var cc *clientClosed
		switch {
		case errors.As(err, &cc):
			c.peerClosed = true
			code := cc.code
			if code == 0 || ws.CheckCloseFrameData(code, "") != nil {
				code = ws.StatusNormalClosure
			}
			c.close(code, "") // the reply the handshake expects
		case errors.As(err, &fe):
			if fe == errTooBig {
				c.s.m.rejects.WithLabelValues("too_big").Inc()
			}
			c.failed.Store(true)
			c.close(fe.code, fe.reason)
		}
		return false
	}
	if c.welcomed.Load() {
		c.timer.Reset(c.idleTimeout())
	}
	return c.handleFrame(op, b)
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

// pong answers a client's ping. Pings count against the connection's
// message rate like any message: past it they go unanswered and are a
// strike, so a ping flood is closed like a message flood. False once the
// connection is closing: reading stops.
func (c *conn) pong(p []byte) bool {
	if !c.limiter.Allow() {
		return c.strike("ping_rate")
	}
	c.enqueue(frame{b: append([]byte(nil), p...), op: ws.OpPong})
	return true
}

var readPool = sync.Pool{New: func() any { b := make([]byte, 0, 2<<10); return &b }}

// idleTimeout is how long the connection may stay silent once welcomed.
func (c *conn) idleTimeout() time.Duration {
	if c.wt != nil {
		return 2*c.s.cfg.AnnounceInterval + c.s.cfg.IdleTimeout/2
	}
	return c.s.cfg.IdleTimeout
}

// handleFrame processes one frame; false ends the connection.
func (c *conn) handleFrame(op ws.OpCode, b []byte) bool {
	if !c.limiter.Allow() || !c.ipe.limiter.Allow() {
		if !c.quiet {
			c.sendError(signaling.CodeRateLimited, "", "over messages_per_second: slow down")
			c.quiet = true
		}
		return c.strike(signaling.CodeRateLimited)
	}
	c.quiet = false
	if c.wt != nil {
		if op != ws.OpText {
			c.enqueue(frame{b: wtwire.Failure("binary frames are not part of the protocol", "")})
			return c.strike("wt_bad_message")
		}
		return c.handleWT(b)
	}
	if op != ws.OpText {
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
		if !c.closing.Load() {
			c.s.penalties.closed(c.ip, time.Now())
		}
		c.s.m.rejects.WithLabelValues("strikes").Inc()
		c.close(ws.StatusPolicyViolation, "too many bad or rate-limited messages")
		return false
	}
	return true
}

func (c *conn) hello(m *signaling.Message) bool {
	if m.Type != signaling.TypeHello {
		c.s.m.rejects.WithLabelValues(string(signaling.CodeHelloFirst)).Inc()
		c.sendError(signaling.CodeHelloFirst, m.Ref, "the first message must be hello")
		c.close(ws.StatusProtocolError, "the first message must be hello")
		return false
	}
	if m.V < signaling.MinVersion || m.V > signaling.Version {
		c.s.m.rejects.WithLabelValues(string(signaling.CodeUnsupportedVersion)).Inc()
		c.sendError(signaling.CodeUnsupportedVersion, m.Ref, "this tracker speaks protocol versions 1..1")
		c.close(ws.StatusProtocolError, "unsupported protocol version")
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
		if !c.s.startNotary(notaryJob{k: k, seg: seg, url: m.URL, cdn: cdn}) {
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
	case len(c.s.cfg.NotaryOrigins) > 0:
		if url := c.s.hub.contested(k, seg, m.URL); url != "" {
			c.s.startNotary(notaryJob{k: k, seg: seg, url: url})
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
		p.conn.enqueue(frame{b: b})
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
	target.conn.enqueue(frame{b: b, read: now})
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
	c.enqueue(frame{b: b})
}

// enqueue never blocks: a client whose queue is full, in frames or in
// bytes, is too slow to keep and is closed.
func (c *conn) enqueue(f frame) {
	if c.closing.Load() {
		return
	}
	c.qmu.Lock()
	if len(c.queue) >= c.s.cfg.SendQueue || c.queued+len(f.b) > c.s.cfg.SendQueueBytes {
		c.qmu.Unlock()
		c.slowConsumer()
		return
	}
	c.pushLocked(f)
	c.qmu.Unlock()
}

// slowConsumer closes a client that does not read what it is sent. What is
// queued for it is dropped so that the close frame goes out next, not after
// a backlog the client is not reading anyway.
func (c *conn) slowConsumer() {
	if c.closing.Load() || !c.slow.CompareAndSwap(false, true) {
		return
	}
	c.s.m.rejects.WithLabelValues("slow_consumer").Inc()
	// Not inline: the caller may be another connection's goroutine
	// holding its own locks.
	go c.closeWith(ws.StatusPolicyViolation, "too slow to read", true)
}

// pushLocked queues f and starts a writer if none is running.
func (c *conn) pushLocked(f frame) {
	if c.dead {
		return
	}
	c.queue = append(c.queue, f)
	c.queued += len(f.b)
	if !c.writing {
		c.writing = true
		c.writers.Add(1)
		go c.writeLoop()
	}
}

// maxBatch bounds the frames one syscall carries, and maxBatchBytes its
// size, so that one write to a slow reader is small enough to finish within
// write_timeout.
const (
	maxBatch      = 64
	maxBatchBytes = 64 << 10
)

// take pops up to maxBatch frames, or ends the writer when the queue is
// empty.
func (c *conn) take(into []frame) []frame {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.queue) == 0 || c.dead {
		c.writing = false
		c.queue, c.queued = nil, 0 // an idle connection keeps no queue
		return into[:0]
	}
	n, size := 0, 0
	for n < len(c.queue) && n < cap(into) && (n == 0 || size+len(c.queue[n].b) <= maxBatchBytes) {
		size += len(c.queue[n].b)
		n++
	}
	into = append(into[:0], c.queue[:n]...)
	clear(c.queue[:n])
	c.queue = c.queue[n:]
	c.queued -= size
	return into
}

// setDead drops queued frames and refuses new ones; the first call marks
// the writer finished.
func (c *conn) setDead() {
	c.qmu.Lock()
	was := c.dead
	c.dead, c.queue, c.queued = true, nil, 0
	c.qmu.Unlock()
	if !was {
		close(c.finished)
		c.s.idle.kick(c) // a parked connection must be finished
	}
}

func (c *conn) writeLoop() {
	defer c.writers.Done()
	batch := make([]frame, 0, maxBatch)
	for {
		// Let the goroutines that are about to queue more for this client
		// run first: under load that turns several syscalls into one.
		runtime.Gosched()
		batch = c.take(batch)
		if len(batch) == 0 {
			return
		}
		out := batchPool.Get().(*[]byte)
		b := (*out)[:0]
		closing := false
		var ends [maxBatch]int // where each frame ends in b
		for i, f := range batch {
			op := f.op
			if op == 0 {
				op = ws.OpText
			}
			b = appendFrame(b, op, f.b)
			ends[i] = len(b)
			if op == ws.OpClose {
				closing = true
				break
			}
		}
		c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
		n, err := c.nc.Write(b)
		if err != nil {
			if !closing && isTimeout(err) {
				c.closeStalled(b, n, ends[:len(batch)])
			} else {
				c.nc.Close()
			}
			c.setDead()
			return
		}
		if cap(b) <= maxPooledBatch {
			*out = b[:0]
			batchPool.Put(out)
		}
		c.nc.SetWriteDeadline(time.Time{})
		now := time.Now()
		for _, f := range batch {
			if !f.read.IsZero() {
				c.s.m.relay.Observe(now.Sub(f.read).Seconds())
			}
		}
		if closing {
			// The reading goroutine waits for the client's reply (linger)
			// and closes the socket.
			if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && c.failed.Load() {
				cw.CloseWrite()
			}
			c.setDead()
			return
		}
	}
}

// closeStalled ends a connection whose client stopped reading in the middle
// of a write: n bytes of b went out. The frame it was in is completed and
// followed by a close frame, given closeWait to get through, so that a
// client that is merely slow learns why it is closed rather than seeing its
// connection cut mid-frame. The reader then waits for the client's reply.
func (c *conn) closeStalled(b []byte, n int, ends []int) {
	if c.slow.CompareAndSwap(false, true) {
		c.s.m.rejects.WithLabelValues("slow_consumer").Inc()
	}
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.nc.SetReadDeadline(time.Now().Add(closeWait))
	})
	end := n
	for _, e := range ends {
		if e >= n {
			end = e
			break
		}
	}
	tail := appendFrame(append([]byte(nil), b[n:end]...), ws.OpClose,
		ws.NewCloseFrameBody(ws.StatusPolicyViolation, "too slow to read"))
	c.nc.SetWriteDeadline(time.Now().Add(closeWait))
	if _, err := c.nc.Write(tail); err != nil {
		c.nc.Close()
		return
	}
	c.s.idle.kick(c) // a parked connection must be read to its end
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// maxPooledBatch keeps one client's burst from pinning a large buffer.
const maxPooledBatch = 64 << 10

// rawControl runs f with c's socket descriptor, which cannot be closed
// meanwhile.
func (c *conn) rawControl(f func(fd int)) error {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return syscall.EINVAL
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { f(int(fd)) })
}

func (c *conn) goAway(retryMs int) {
	c.sendMsg(&signaling.Message{Type: signaling.TypeGoAway, Text: "node draining", RetryMs: retryMs})
}

// close ends the connection with a close code, after the frames already
// queued (the error that explains it) have been written. It never blocks its
// caller, which may be another connection's goroutine.
func (c *conn) close(code ws.StatusCode, reason string) {
	c.closeWith(code, reason, false)
}

// closeWith is close; drop discards the frames still queued, which then
// never reach the client.
func (c *conn) closeWith(code ws.StatusCode, reason string, drop bool) {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		// Bounds the wait for the client's close frame, and ends a read
		// that is waiting on a client that went silent mid-message.
		c.nc.SetReadDeadline(time.Now().Add(closeWait))
		c.qmu.Lock()
		dead := c.dead
		if drop {
			clear(c.queue)
			c.queue, c.queued = c.queue[:0], 0
		}
		c.pushLocked(frame{op: ws.OpClose, b: ws.NewCloseFrameBody(code, reason)})
		c.qmu.Unlock()
		if dead {
			c.nc.Close() // the writer died: nothing can be said any more
		}
		c.s.idle.kick(c) // a parked connection must be read to its end
	})
}
