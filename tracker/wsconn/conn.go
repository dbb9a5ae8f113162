// Package wsconn is the tracker's WebSocket transport: the server side of
// RFC 6455 framing, a bounded send queue drained by a batching writer, the
// close handshake, and an idle poller, so that an idle connection holds no
// goroutine and no buffer. What the messages mean is its Handler's.
package wsconn

import (
	"bufio"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// StatusCode is a close frame's code (RFC 6455 section 7.4).
type StatusCode = ws.StatusCode

// The close codes the tracker sends.
const (
	StatusNormalClosure   = ws.StatusNormalClosure
	StatusGoingAway       = ws.StatusGoingAway
	StatusProtocolError   = ws.StatusProtocolError
	StatusPolicyViolation = ws.StatusPolicyViolation
	StatusMessageTooBig   = ws.StatusMessageTooBig
)

// Handler is what a connection's messages mean: a session of the tracker.
// Its methods run on the connection's reading goroutine, one at a time.
type Handler interface {
	// Message handles one whole data message (text, or binary when text is
	// false). b is valid only during the call. False ends the connection
	// (the handler has closed it, or will).
	Message(text bool, b []byte) bool
	// Ping reports whether a client's ping may be answered (it counts
	// against the client's message rate like any message).
	Ping() bool
	// Ended runs once, when reading is over and before the socket closes.
	Ended()
}

// Options are a server's settings, shared by its connections.
type Options struct {
	MaxMessageBytes int           // a message's limit, whole or in fragments
	SendQueue       int           // frames queued for one client at most
	SendQueueBytes  int           // and their payload bytes
	WriteTimeout    time.Duration // for one batched write
	Poller          *Poller       // where idle connections park; nil: none
	// Rejected, if set, counts a connection's fault by its reason
	// ("too_big", "slow_consumer").
	Rejected func(reason string)
	// Delivered observes how long a relayed frame took from being read to
	// being written (SendRelayed).
	Delivered func(time.Duration)
}

func (o *Options) rejected(reason string) {
	if o.Rejected != nil {
		o.Rejected(reason)
	}
}

// Conn is one client's WebSocket. A reading goroutine (one at a time, run)
// reads and dispatches while frames arrive; frames for it queue in a bounded
// slice that a writer goroutine drains, so a slow client never blocks the
// peers relaying to it. Each runs only while it has work: an idle connection
// holds no goroutine (on Linux) and no queue, which is most of what a node
// with 20k viewers holds.
type Conn struct {
	nc net.Conn
	h  Handler
	o  *Options

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
// read, for Options.Delivered.
type frame struct {
	b    []byte
	read time.Time
	// op is a control frame's opcode (a pong, or a close, which ends the
	// writer after the frames queued before it); 0 is a text message.
	op ws.OpCode
}

// New makes a connection of an upgraded socket (Upgrade); prefix is what
// the client sent along with its upgrade request, read first. Start serves
// it.
func New(nc net.Conn, prefix []byte, h Handler, o *Options) *Conn {
	return &Conn{nc: nc, prefix: prefix, h: h, o: o, finished: make(chan struct{})}
}

// Start serves c on a goroutine of its own; done runs once it is over.
func (c *Conn) Start(done func()) {
	c.done = done
	// Nothing has been said yet: park at once (hello is usually on its way,
	// and the poller reports it), or wait for it on a goroutine.
	if !c.buffered() && c.park() {
		return
	}
	go c.run()
}

// park hands c to the idle poller, if there is one.
func (c *Conn) park() bool { return c.o.Poller != nil && c.o.Poller.park(c) }

// kick wakes c if it is parked: it is being closed.
func (c *Conn) kick() {
	if c.o.Poller != nil {
		c.o.Poller.kick(c)
	}
}

// run reads a frame, and more while any are buffered, then parks the
// connection in the idle poller and returns: an idle connection holds no
// goroutine and no read buffer. The poller runs it again when bytes arrive,
// or when the connection is being closed. Where there is no poller (not
// Linux), it waits for the next frame on its goroutine.
func (c *Conn) run() {
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
			if c.park() {
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
func (c *Conn) buffered() bool {
	return len(c.prefix) > 0 || (c.rd != nil && c.rd.br.Buffered() > 0)
}

func (c *Conn) dropReader() {
	if c.rd != nil {
		c.rd.br.Reset(nil)
		readerPool.Put(c.rd)
		c.rd = nil
	}
}

// Read is the socket as the reader sees it: first the bytes the client
// sent along with its upgrade request, if any.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		if c.prefix = c.prefix[n:]; len(c.prefix) == 0 {
			c.prefix = nil
		}
		return n, nil
	}
	return c.nc.Read(p)
}

// Closing reports whether a close has begun: what is sent now is dropped.
func (c *Conn) Closing() bool { return c.closing.Load() }

// ending reports whether the connection is being closed.
func (c *Conn) ending() bool {
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
func (c *Conn) linger() {
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
		_, b, err := rd.readMessage((*buf)[:0], c.o.MaxMessageBytes, func([]byte) bool { return true })
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

// finish ends the session (Handler.Ended) and closes the connection, after
// the frames queued before a close.
func (c *Conn) finish() {
	c.h.Ended()
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
func (c *Conn) readOne() bool {
	buf := readPool.Get().(*[]byte)
	op, b, err := c.rd.readMessage((*buf)[:0], c.o.MaxMessageBytes, c.pong)
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
			c.Close(code, "") // the reply the handshake expects
		case errors.As(err, &fe):
			if fe == errTooBig {
				c.o.rejected("too_big")
			}
			c.failed.Store(true)
			c.Close(fe.code, fe.reason)
		}
		return false
	}
	return c.h.Message(op == ws.OpText, b)
}

// pong answers a client's ping if the handler allows it. False once the
// connection is closing: reading stops, so that a ping flood closed for it
// is not read ping by ping.
func (c *Conn) pong(p []byte) bool {
	if c.h.Ping() {
		c.enqueue(frame{b: append([]byte(nil), p...), op: ws.OpPong})
	}
	return !c.closing.Load()
}

var readPool = sync.Pool{New: func() any { b := make([]byte, 0, 2<<10); return &b }}

// Send queues a text message; it never blocks. A client whose queue is
// full, in frames or in bytes, is too slow to keep and is closed.
func (c *Conn) Send(b []byte) { c.enqueue(frame{b: b}) }

// SendRelayed is Send for a message read from another client at read:
// Options.Delivered observes its time through the tracker.
func (c *Conn) SendRelayed(b []byte, read time.Time) { c.enqueue(frame{b: b, read: read}) }

func (c *Conn) enqueue(f frame) {
	if c.closing.Load() {
		return
	}
	c.qmu.Lock()
	if len(c.queue) >= c.o.SendQueue || c.queued+len(f.b) > c.o.SendQueueBytes {
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
func (c *Conn) slowConsumer() {
	if c.closing.Load() || !c.slow.CompareAndSwap(false, true) {
		return
	}
	c.o.rejected("slow_consumer")
	// Not inline: the caller may be another connection's goroutine
	// holding its own locks.
	go c.closeWith(ws.StatusPolicyViolation, "too slow to read", true)
}

// pushLocked queues f and starts a writer if none is running.
func (c *Conn) pushLocked(f frame) {
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
func (c *Conn) take(into []frame) []frame {
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
func (c *Conn) setDead() {
	c.qmu.Lock()
	was := c.dead
	c.dead, c.queue, c.queued = true, nil, 0
	c.qmu.Unlock()
	if !was {
		close(c.finished)
		c.kick() // a parked connection must be finished
	}
}

func (c *Conn) writeLoop() {
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
		c.nc.SetWriteDeadline(time.Now().Add(c.o.WriteTimeout))
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
		if c.o.Delivered != nil {
			now := time.Now()
			for _, f := range batch {
				if !f.read.IsZero() {
					c.o.Delivered(now.Sub(f.read))
				}
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
func (c *Conn) closeStalled(b []byte, n int, ends []int) {
	if c.slow.CompareAndSwap(false, true) {
		c.o.rejected("slow_consumer")
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
	c.kick() // a parked connection must be read to its end
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
func (c *Conn) rawControl(f func(fd int)) error {
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

// Close ends the connection with a close code, after the frames already
// queued (the error that explains it) have been written. It never blocks its
// caller, which may be another connection's goroutine.
func (c *Conn) Close(code StatusCode, reason string) {
	c.closeWith(code, reason, false)
}

// closeWith is Close; drop discards the frames still queued, which then
// never reach the client.
func (c *Conn) closeWith(code ws.StatusCode, reason string, drop bool) {
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
		c.kick() // a parked connection must be read to its end
	})
}
