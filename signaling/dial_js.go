//go:build js && wasm

package signaling

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"syscall/js"
)

// DialOptions configure Dial. In the browser the page's origin is the
// Origin header and frames are bounded by MaxFrameLen; the fields exist so
// that callers build for both.
type DialOptions struct {
	Origin string
}

// wsConn is Conn over the page's WebSocket: the tracker
// connection without net/http in the binary.
type wsConn struct {
	ws     js.Value
	funcs  []js.Func
	mu     sync.Mutex
	queue  [][]byte
	ready  chan struct{} // signalled when queue gains a frame
	closed chan struct{}
	once   sync.Once
	err    error
}

// maxQueued frames may wait for Read; a tracker that floods more is cut off.
const maxQueued = 4096

// Dial connects to the tracker at url (ws:// or wss://, path /ws) over the
// page's WebSocket, says hello and waits for the welcome. ctx bounds the
// whole handshake. The browser sets the Origin header itself.
func Dial(ctx context.Context, url string, opts *DialOptions) (*Client, error) {
	c := &wsConn{ws: js.Global().Get("WebSocket").New(url), ready: make(chan struct{}, 1), closed: make(chan struct{})}
	opened := make(chan struct{})
	on := func(name string, f func(js.Value)) {
		fn := js.FuncOf(func(_ js.Value, a []js.Value) any { f(a[0]); return nil })
		c.funcs = append(c.funcs, fn)
		c.ws.Set(name, fn)
	}
	on("onopen", func(js.Value) { close(opened) })
	on("onmessage", func(e js.Value) {
		d := e.Get("data")
		if d.Type() != js.TypeString {
			return // the protocol is text frames only
		}
		c.mu.Lock()
		if len(c.queue) >= maxQueued {
			c.mu.Unlock()
			c.ws.Call("close", 1008, "client queue full")
			return
		}
		c.queue = append(c.queue, []byte(d.String()))
		c.mu.Unlock()
		select {
		case c.ready <- struct{}{}:
		default:
		}
	})
	on("onclose", func(e js.Value) {
		c.finish(errors.New("websocket closed: " + strconv.Itoa(e.Get("code").Int()) + " " + e.Get("reason").String()))
	})
	select {
	case <-opened:
	case <-c.closed:
		return nil, c.err
	case <-ctx.Done():
		c.CloseNow()
		return nil, ctx.Err()
	}
	return NewClient(ctx, c)
}

func (c *wsConn) finish(err error) {
	c.once.Do(func() {
		c.err = err
		close(c.closed)
		// The socket still fires events after close() (onclose comes
		// later): unhook the handlers before releasing them, or each event
		// logs "call to released function".
		for _, name := range []string{"onopen", "onmessage", "onclose"} {
			c.ws.Set(name, js.Null())
		}
		for _, f := range c.funcs {
			defer f.Release()
		}
	})
}

func (c *wsConn) Read(ctx context.Context) ([]byte, error) {
	for {
		c.mu.Lock()
		if len(c.queue) > 0 {
			b := c.queue[0]
			c.queue[0] = nil
			c.queue = c.queue[1:]
			c.mu.Unlock()
			return b, nil
		}
		c.mu.Unlock()
		select {
		case <-c.ready:
		case <-c.closed:
			return nil, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (c *wsConn) Write(_ context.Context, b []byte) error {
	select {
	case <-c.closed:
		return c.err
	default:
	}
	c.ws.Call("send", string(b))
	return nil
}

func (c *wsConn) Close(code int, reason string) error {
	c.ws.Call("close", code, reason)
	c.finish(errors.New("closed"))
	return nil
}

func (c *wsConn) CloseNow() error { return c.Close(1000, "") }
