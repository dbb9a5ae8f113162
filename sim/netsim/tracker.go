package netsim

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// TrackerClient is an HTTP client whose connections cross the viewer's link
// to the tracker: every byte arrives half the link's RTT after it was sent,
// each way, so that a signaling round trip (an offer relayed to a peer and
// its answer back) costs what it would. For signaling.DialOptions.HTTPClient:
// the tracker's WebSocket runs over the connection it dials.
func TrackerClient(l Link) *http.Client {
	d := l.RTT / 2
	dialer := &net.Dialer{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil || d <= 0 {
				return c, err
			}
			return newDelayedConn(c, d), nil
		},
	}
	return &http.Client{Transport: tr}
}

// delayedConn delays what is written and what is read by a fixed one-way
// latency, keeping order: writes are queued and sent when due, reads are
// held until due. Neither blocks the other, as on a real path.
type delayedConn struct {
	net.Conn
	d time.Duration

	wmu    sync.Mutex
	wq     []chunk
	wready chan struct{} // signalled when wq gains a chunk
	werr   error

	rq     chan chunk // chunks read, with when they are due
	rerr   error      // the underlying read's error, after rq is drained
	rbuf   []byte
	closed chan struct{}
	once   sync.Once
}

type chunk struct {
	b   []byte
	due time.Time
}

func newDelayedConn(c net.Conn, d time.Duration) *delayedConn {
	dc := &delayedConn{Conn: c, d: d, wready: make(chan struct{}, 1), rq: make(chan chunk, 256), closed: make(chan struct{})}
	go dc.writeLoop()
	go dc.readLoop()
	return dc
}

func (c *delayedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	c.wq = append(c.wq, chunk{b: append([]byte(nil), p...), due: time.Now().Add(c.d)})
	select {
	case c.wready <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (c *delayedConn) writeLoop() {
	for {
		c.wmu.Lock()
		if len(c.wq) == 0 {
			c.wmu.Unlock()
			select {
			case <-c.wready:
				continue
			case <-c.closed:
				return
			}
		}
		ch := c.wq[0]
		c.wq = c.wq[1:]
		c.wmu.Unlock()
		if wait := time.Until(ch.due); wait > 0 {
			select {
			case <-time.After(wait):
			case <-c.closed:
				return
			}
		}
		if _, err := c.Conn.Write(ch.b); err != nil {
			c.wmu.Lock()
			c.werr = err
			c.wmu.Unlock()
			return
		}
	}
}

func (c *delayedConn) readLoop() {
	defer close(c.rq)
	for {
		b := make([]byte, 32<<10)
		n, err := c.Conn.Read(b)
		if n > 0 {
			select {
			case c.rq <- chunk{b: b[:n], due: time.Now().Add(c.d)}:
			case <-c.closed:
				return
			}
		}
		if err != nil {
			c.rerr = err // read once rq is closed and drained
			return
		}
	}
}

func (c *delayedConn) Read(p []byte) (int, error) {
	if len(c.rbuf) == 0 {
		ch, ok := <-c.rq
		if !ok {
			return 0, c.rerr
		}
		if wait := time.Until(ch.due); wait > 0 {
			time.Sleep(wait)
		}
		c.rbuf = ch.b
	}
	n := copy(p, c.rbuf)
	c.rbuf = c.rbuf[n:]
	return n, nil
}

func (c *delayedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
