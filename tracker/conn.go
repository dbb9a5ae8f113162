package tracker

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/peercdn/peercdn/signaling"
)

// conn is one agent's WebSocket. A reading goroutine (one at a time, run)
// reads and dispatches while frames arrive; frames for it queue in a
// bounded slice that a writer goroutine drains, so a slow client never
// blocks the peers relaying to it. Each runs only while it has work: an
// idle connection holds no goroutine (on Linux) and no queue, which is
// most of what a node with 20k viewers holds.
type conn struct {
	s      *Server
	ws     *websocket.Conn
	ip     string
	group  string // network group of ip, for matching (proximity.go)
	origin string
	ipe    *ipEntry

	limiter *rate.Limiter
	strikes int
	// quiet suppresses repeated rate_limited errors until a message passes.
	quiet bool

	peer     *peer   // nil until hello; owned by the reading goroutine
	wt       *wtConn // set on /announce sockets (WebTorrent protocol)
	welcomed atomic.Bool
	timer    *time.Timer // handshake, then idle timeout

	bw      *batchWriter // under ws: the writer sends queued frames in one syscall
	qmu     sync.Mutex
	queue   []frame
	writing bool // a writer goroutine is draining queue
	dead    bool // the writer is finished for good: frames are dropped
	writers sync.WaitGroup

	closeOnce sync.Once
	closing   atomic.Bool
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

	// A close frame ends the writer after the frames queued before it.
	close       bool
	closeCode   websocket.StatusCode
	closeReason string
}

func newConn(s *Server, ws *websocket.Conn, ip, origin string, ipe *ipEntry) *conn {
	return &conn{
		s: s, ws: ws, ip: ip, origin: origin, ipe: ipe, group: s.groupOf(ip),
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
			c.close(websocket.StatusPolicyViolation, "no hello within the handshake timeout")
			return
		}
		c.s.m.rejects.WithLabelValues("idle_timeout").Inc()
		c.close(websocket.StatusPolicyViolation, "idle timeout: send a ping every heartbeat_ms")
	})
	// Nothing has been said yet: park at once (hello is usually on its way,
	// and the poller reports it), or wait for it on a goroutine.
	if !c.bw.buffered() && c.s.idle.park(c) {
		return
	}
	go c.run()
}

// run reads a frame, and more while any are buffered, then parks the
// connection in the idle poller and returns: an idle connection holds no
// goroutine. The poller runs it again when bytes arrive, or when the
// connection is being closed. Where there is no poller (not Linux), or for
// a connection being closed, it waits for the next frame on its goroutine.
func (c *conn) run() {
	for {
		if !c.readOne() {
			c.finish()
			return
		}
		if !c.bw.buffered() && c.s.idle.park(c) {
			return
		}
	}
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

// finish leaves every swarm and closes the connection, after the frames
// queued before a close.
func (c *conn) finish() {
	c.timer.Stop()
	if c.wt != nil {
		c.s.wtClusterLeave(c.s.wt.leave(c))
	}
	if c.peer != nil {
		keys := c.s.hub.swarmsOf(c.peer)
		c.s.hub.remove(c.peer)
		c.s.clusterLeave(c.peer, keys)
	}
	if c.closing.Load() {
		// The close code and the frames queued before it get out first,
		// unless the writer already died on a write error.
		<-c.finished
	}
	c.setDead()
	c.writers.Wait()
	c.ws.CloseNow()
	c.done()
}

// readOne reads and handles one frame; false ends the connection. Frames
// are read into a pooled buffer, taken only once one has started: an idle
// connection holds none. Handlers copy what they keep (JSON decoding
// does), so it goes back after each frame.
func (c *conn) readOne() bool {
	// No context: a read ends when the connection is closed, and a
	// cancellable one costs an allocation per message.
	typ, r, err := c.ws.Reader(context.Background())
	var buf *bytes.Buffer
	if err == nil {
		buf = readPool.Get().(*bytes.Buffer)
		buf.Reset()
		_, err = buf.ReadFrom(r)
	}
	if err != nil {
		if websocket.CloseStatus(err) == websocket.StatusMessageTooBig || errors.Is(err, websocket.ErrMessageTooBig) {
			c.s.m.rejects.WithLabelValues("too_big").Inc()
		}
		if buf != nil {
			readPool.Put(buf)
		}
		return false
	}
	if c.welcomed.Load() {
		c.timer.Reset(c.idleTimeout())
	}
	ok := c.handleFrame(typ, buf.Bytes())
	if buf.Cap() <= maxPooledBatch {
		readPool.Put(buf)
	}
	return ok
}

var readPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// idleTimeout is how long the connection may stay silent once welcomed.
func (c *conn) idleTimeout() time.Duration {
	if c.wt != nil {
		return 2*c.s.cfg.AnnounceInterval + c.s.cfg.IdleTimeout/2
	}
	return c.s.cfg.IdleTimeout
}

// handleFrame processes one frame; false ends the connection.
func (c *conn) handleFrame(typ websocket.MessageType, b []byte) bool {
	if !c.limiter.Allow() || !c.ipe.limiter.Allow() {
		if !c.quiet {
			c.sendError(signaling.CodeRateLimited, "", "over messages_per_second: slow down")
			c.quiet = true
		}
		return c.strike(signaling.CodeRateLimited)
	}
	c.quiet = false
	if c.wt != nil {
		if typ != websocket.MessageText {
			c.enqueue(frame{b: wtFailure("binary frames are not part of the protocol", "")})
			return c.strike("wt_bad_message")
		}
		return c.handleWT(b)
	}
	if typ != websocket.MessageText {
		c.sendError(signaling.CodeBadMessage, "", "binary frames are not part of the protocol")
		return c.strike(signaling.CodeBadMessage)
	}
	m, err := signaling.Decode(b)
	if err != nil {
		c.sendError(signaling.CodeBadMessage, "", err.Error())
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
		c.s.clusterLeave(c.peer, []swarmKey{c.key(m)})
	case signaling.TypePeers:
		k := c.key(m)
		var remote []Member
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
	c.strikes++
	if c.strikes >= c.s.cfg.MaxStrikes {
		c.s.m.rejects.WithLabelValues("strikes").Inc()
		c.close(websocket.StatusPolicyViolation, "too many bad or rate-limited messages")
		return false
	}
	return true
}

func (c *conn) hello(m *signaling.Message) bool {
	if m.Type != signaling.TypeHello {
		c.s.m.rejects.WithLabelValues(string(signaling.CodeHelloFirst)).Inc()
		c.sendError(signaling.CodeHelloFirst, m.Ref, "the first message must be hello")
		c.close(websocket.StatusProtocolError, "the first message must be hello")
		return false
	}
	if m.V < signaling.MinVersion || m.V > signaling.Version {
		c.s.m.rejects.WithLabelValues(string(signaling.CodeUnsupportedVersion)).Inc()
		c.sendError(signaling.CodeUnsupportedVersion, m.Ref, "this tracker speaks protocol versions 1..1")
		c.close(websocket.StatusProtocolError, "unsupported protocol version")
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
	c.s.hub.add(p)
	c.timer.Reset(c.s.cfg.IdleTimeout)
	c.sendMsg(&signaling.Message{
		Type: signaling.TypeWelcome, Ref: m.Ref, V: signaling.Version, PeerID: p.id,
		ICEServers:  c.s.cfg.ICEServers,
		AllowRelay:  c.s.cfg.AllowRelay,
		HeartbeatMs: int(c.s.cfg.IdleTimeout / 3 / time.Millisecond),
		Limits: &signaling.Limits{
			MaxMessageBytes:   c.s.cfg.MaxMessageBytes,
			MaxSwarms:         c.s.cfg.MaxSwarmsPerConn,
			MessagesPerSecond: c.s.cfg.MessagesPerSecond,
			Suggestions:       c.s.cfg.Suggestions,
			HashQuorum:        c.s.cfg.HashQuorum,
		},
	})
	return true
}

func (c *conn) key(m *signaling.Message) swarmKey {
	return swarmKey{origin: c.origin, swarm: *m.Swarm}
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
	if m.Slots != nil {
		c.s.hub.setSlots(c.peer, *m.Slots)
	}
	k := c.key(m)
	code := c.s.hub.join(c.peer, k)
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
		}[code]
		c.reply(code, m.Ref, text)
		return
	}
	c.sendMsg(&signaling.Message{Type: signaling.TypePeers, Ref: m.Ref, Swarm: m.Swarm, Peers: ids})
	for _, h := range c.s.hub.recent(k) {
		c.sendMsg(h)
	}
}

// hash takes a viewer's report of a segment's SHA-256; one that completes
// the quorum is pushed to every member of the swarm on this node.
func (c *conn) hash(m *signaling.Message) {
	if c.s.cfg.HashQuorum == 0 {
		return
	}
	seg, err := strconv.ParseUint(m.Segment, 10, 64)
	if err != nil || !validHash(m.SHA256) {
		c.reply(signaling.CodeBadMessage, m.Ref, "bad segment or sha256")
		return
	}
	k := c.key(m)
	accepted, lie, code := c.s.hub.reportHash(c.peer, k, seg, m.SHA256)
	if code == "" && !lie {
		c.s.clusterVote(c.peer, k, m)
	}
	switch {
	case code != "":
		c.reply(code, m.Ref, "join the swarm first")
	case lie:
		// Against a hash the quorum agreed on: a lie or a corrupt copy.
		c.s.m.rejects.WithLabelValues("hash_mismatch").Inc()
		c.strike(signaling.CodeBadMessage)
	case accepted != "":
		c.s.pushHash(k, seg, accepted)
	case len(c.s.cfg.NotaryOrigins) > 0:
		if url := c.s.hub.contested(k, seg, m.URL); url != "" {
			c.s.notarize(k, seg, url)
		}
	}
}

// pushHash tells every member of k on this node that seg's hash is trusted.
func (s *Server) pushHash(k swarmKey, seg uint64, sum string) {
	b, err := signaling.Encode(hashMessage(k, seg, sum))
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
		c.s.clusterLeave(removed, []swarmKey{k})
		removed.conn.reply(signaling.CodeBanned, "", "removed from "+k.swarm.String()+": peers reported corrupt segments from you")
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
		c.reply(code, m.Ref, "cannot relay "+string(m.Type)+" to "+truncate(m.To, 40))
		// Relaying to strangers is how floods look: it counts as a strike.
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

// enqueue never blocks: a client whose queue is full is too slow to keep
// and is closed.
func (c *conn) enqueue(f frame) {
	if c.closing.Load() {
		return
	}
	c.qmu.Lock()
	if len(c.queue) >= c.s.cfg.SendQueue {
		c.qmu.Unlock()
		c.s.m.rejects.WithLabelValues("slow_consumer").Inc()
		go c.close(websocket.StatusPolicyViolation, "too slow to read: send queue full")
		return
	}
	c.pushLocked(f)
	c.qmu.Unlock()
}

// pushLocked queues f and starts a writer if none is running.
func (c *conn) pushLocked(f frame) {
	if c.dead {
		return
	}
	c.queue = append(c.queue, f)
	if !c.writing {
		c.writing = true
		c.writers.Add(1)
		go c.writeLoop()
	}
}

// maxBatch bounds the frames one syscall carries.
const maxBatch = 64

// take pops up to maxBatch frames, or ends the writer when the queue is
// empty.
func (c *conn) take(into []frame) []frame {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.queue) == 0 || c.dead {
		c.writing = false
		c.queue = nil // an idle connection keeps no queue
		return into[:0]
	}
	n := copy(into[:cap(into)], c.queue)
	clear(c.queue[:n])
	c.queue = c.queue[n:]
	return into[:n]
}

// setDead drops queued frames and refuses new ones; the first call marks
// the writer finished.
func (c *conn) setDead() {
	c.qmu.Lock()
	was := c.dead
	c.dead, c.queue = true, nil
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
		c.bw.begin()
		var closing *frame
		var err error
		for i := range batch {
			if batch[i].close {
				closing = &batch[i]
				break
			}
			// Into the batch, in memory: no deadline needed here; end
			// bounds the real write.
			if err = c.ws.Write(context.Background(), websocket.MessageText, batch[i].b); err != nil {
				break
			}
		}
		if err == nil {
			err = c.bw.end(true, c.s.cfg.WriteTimeout)
		} else {
			c.bw.end(false, 0)
		}
		if err != nil {
			c.ws.CloseNow()
			c.setDead()
			return
		}
		now := time.Now()
		for _, f := range batch {
			if !f.read.IsZero() {
				c.s.m.relay.Observe(now.Sub(f.read).Seconds())
			}
		}
		if closing != nil {
			c.bw.closeRead.Lock()
			c.ws.Close(closing.closeCode, closing.closeReason) // waits up to 5s for the client's close frame
			c.bw.closeRead.Unlock()
			c.setDead()
			return
		}
	}
}

func (c *conn) goAway(retryMs int) {
	c.sendMsg(&signaling.Message{Type: signaling.TypeGoAway, Text: "node draining", RetryMs: retryMs})
}

// close ends the connection with a close code, after the frames already
// queued (the error that explains it) have been written. It never blocks its
// caller, which may be another connection's goroutine.
func (c *conn) close(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.qmu.Lock()
		dead := c.dead
		c.pushLocked(frame{close: true, closeCode: code, closeReason: reason})
		c.qmu.Unlock()
		if dead {
			c.ws.CloseNow() // the writer died: nothing can be said any more
		}
		c.s.idle.kick(c) // a parked connection must be read to its end
	})
}
