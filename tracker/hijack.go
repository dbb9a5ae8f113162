package tracker

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"sync"
	"time"
)

// Each WebSocket's buffers. net/http hands a hijacked connection 4 KiB for
// reading and 4 KiB for writing, which the WebSocket keeps for its life:
// 8 KiB for a viewer that sends a few hundred bytes a minute. Reads of
// payloads larger than readBufSize go straight into the message. Writes go
// through a batchWriter, which holds memory only while the writer drains
// the send queue; the WebSocket's own write buffer then only has to hold a
// whole control frame (at most 131 bytes), so that every write outside a
// batch is one complete frame.
const (
	readBufSize  = 1 << 10
	writeBufSize = 256
)

// smallBuffers gives the WebSocket upgrade small buffers instead of
// net/http's, and routes its writes through bw.
type smallBuffers struct {
	http.ResponseWriter
	bw *batchWriter
}

func (w smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		nc.Close()
		return nil, nil, err
	}
	w.bw.nc = nc
	br := bufio.NewReaderSize(nc, readBufSize)
	w.bw.br = br
	if n := brw.Reader.Buffered(); n > 0 {
		// Bytes the client sent before the upgrade finished: the WebSocket
		// reads them first, through the conn it is given.
		b, _ := brw.Reader.Peek(n)
		w.bw.prefix = bytes.NewReader(bytes.Clone(b))
		return &prefixConn{nc, w.bw.prefix}, bufio.NewReadWriter(br, bufio.NewWriterSize(w.bw, writeBufSize)), nil
	}
	return nc, bufio.NewReadWriter(br, bufio.NewWriterSize(w.bw, writeBufSize)), nil
}

// prefixConn reads prefix before the connection.
type prefixConn struct {
	net.Conn
	prefix *bytes.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if c.prefix.Len() > 0 {
		return c.prefix.Read(p)
	}
	return c.Conn.Read(p)
}

// batchWriter sits under the WebSocket's write buffer. Between begin and
// end it collects every frame the connection's writer writes and sends
// them in one syscall: under load a client's queue holds several frames,
// and a syscall per frame was a third of the tracker's CPU. Outside a
// batch (control frames: pongs, close) it writes through.
type batchWriter struct {
	nc     net.Conn
	br     *bufio.Reader // the WebSocket's read buffer, for buffered
	prefix *bytes.Reader // bytes read with the upgrade request, if any
	mu     sync.Mutex
	buf    *[]byte // non-nil inside a batch

	// closeRead is held while the WebSocket library reads the client's
	// reply to our close frame on the writer's goroutine: the only read
	// that is not the connection's own goroutine's, and buffered must not
	// look at the read buffer meanwhile.
	closeRead sync.Mutex
}

// buffered reports whether bytes already read from the socket wait to be
// handled. Bytes still in the socket need no check: the idle poller's
// registration is level-triggered and reports them at once. During a
// close handshake it says yes: the caller then reads, which waits for the
// handshake and ends the connection, instead of parking it.
func (b *batchWriter) buffered() bool {
	if !b.closeRead.TryLock() {
		return true
	}
	defer b.closeRead.Unlock()
	return b.br == nil || b.br.Buffered() > 0 || (b.prefix != nil && b.prefix.Len() > 0)
}

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// maxPooledBatch keeps one client's burst from pinning a large buffer.
const maxPooledBatch = 64 << 10

func (b *batchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf != nil {
		*b.buf = append(*b.buf, p...)
		return len(p), nil
	}
	return b.nc.Write(p)
}

func (b *batchWriter) begin() {
	b.mu.Lock()
	b.buf = batchPool.Get().(*[]byte)
	b.mu.Unlock()
}

// end writes the batch, within timeout; with send false it drops it.
func (b *batchWriter) end(send bool, timeout time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	buf := b.buf
	b.buf = nil
	var err error
	if send && len(*buf) > 0 {
		b.nc.SetWriteDeadline(time.Now().Add(timeout))
		_, err = b.nc.Write(*buf)
		b.nc.SetWriteDeadline(time.Time{})
	}
	if cap(*buf) <= maxPooledBatch {
		*buf = (*buf)[:0]
		batchPool.Put(buf)
	}
	return err
}
