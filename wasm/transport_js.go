//go:build js && wasm

package main

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"syscall/js"

	"github.com/peercdn/peercdn/agent"
	"github.com/peercdn/peercdn/signaling"
)

// await blocks the calling goroutine (never the event loop) on a Promise.
func await(p js.Value) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	ok := js.FuncOf(func(_ js.Value, a []js.Value) any {
		ch <- result{v: a[0]}
		return nil
	})
	fail := js.FuncOf(func(_ js.Value, a []js.Value) any {
		msg := "promise rejected"
		if len(a) > 0 && a[0].Truthy() {
			msg = a[0].Call("toString").String()
		}
		ch <- result{err: errors.New(msg)}
		return nil
	})
	defer ok.Release()
	defer fail.Release()
	p.Call("then", ok, fail)
	r := <-ch
	return r.v, r.err
}

// fetchCDN is agent.CDN over the browser's fetch. The body streams: Get
// returns when the response's headers arrive, so that the agent times the
// CDN's first byte and its rate as the player would (the ABR figures it
// hands the player). Reading the whole body before returning made a CDN at
// 1.2 Mbit/s look like 4-9 Mbit/s to hls.js.
type fetchCDN struct{}

func (fetchCDN) Get(ctx context.Context, url string, from int) (*agent.CDNResponse, error) {
	init := js.Global().Get("Object").New()
	if from > 0 {
		h := js.Global().Get("Object").New()
		h.Set("Range", "bytes="+strconv.Itoa(from)+"-")
		init.Set("headers", h)
	}
	ac := js.Global().Get("AbortController").New()
	init.Set("signal", ac.Get("signal"))
	stop := context.AfterFunc(ctx, func() { ac.Call("abort") })
	resp, err := await(js.Global().Call("fetch", url, init))
	if err != nil {
		stop()
		return nil, err
	}
	// The length is what arrives: Content-Length may count compressed
	// bytes, and a body cut short makes the stream's read reject.
	body := &streamBody{stop: stop, abort: func() { ac.Call("abort") }}
	if b := resp.Get("body"); b.Truthy() {
		body.reader = b.Call("getReader")
	}
	r := &agent.CDNResponse{Status: resp.Get("status").Int(), ContentLength: -1, Body: body}
	if cr := resp.Get("headers").Call("get", "Content-Range"); cr.Type() == js.TypeString {
		r.ContentRange = cr.String()
	}
	return r, nil
}

// streamBody reads a fetch response's ReadableStream.
type streamBody struct {
	reader js.Value // undefined: no body
	buf    []byte
	done   bool
	stop   func() bool
	abort  func()
}

func (b *streamBody) Read(p []byte) (int, error) {
	for len(b.buf) == 0 {
		if b.done || !b.reader.Truthy() {
			return 0, io.EOF
		}
		r, err := await(b.reader.Call("read"))
		if err != nil {
			b.done = true
			return 0, err
		}
		if r.Get("done").Bool() {
			b.done = true
			continue
		}
		v := r.Get("value")
		b.buf = make([]byte, v.Length())
		js.CopyBytesToGo(b.buf, v)
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

// Close stops the transfer if the body was not read to its end.
func (b *streamBody) Close() error {
	if !b.done {
		b.done = true
		b.abort()
	}
	b.stop()
	return nil
}

// wsConn is signaling.Conn over the page's WebSocket: the tracker
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

func dialWS(ctx context.Context, url, _ string) (*signaling.Client, error) {
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
	return signaling.NewClient(ctx, c)
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
