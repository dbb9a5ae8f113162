//go:build js && wasm

package agent

import (
	"context"
	"io"
	"syscall/js"

	"github.com/peercdn/peercdn/internal/jspromise"
	"github.com/peercdn/peercdn/signaling"
)

// FetchCDN is CDN over the browser's fetch. The body streams: Get
// returns when the response's headers arrive, so that the agent times the
// CDN's first byte and its rate as the player would (the ABR figures it
// hands the player). Reading the whole body before returning made a CDN at
// 1.2 Mbit/s look like 4-9 Mbit/s to hls.js.
type FetchCDN struct{}

// Get implements CDN.
func (FetchCDN) Get(ctx context.Context, url string, first, last int64) (*CDNResponse, error) {
	init := js.Global().Get("Object").New()
	if r := rangeHeader(first, last); r != "" {
		h := js.Global().Get("Object").New()
		h.Set("Range", r)
		init.Set("headers", h)
	}
	ac := js.Global().Get("AbortController").New()
	init.Set("signal", ac.Get("signal"))
	stop := context.AfterFunc(ctx, func() { ac.Call("abort") })
	resp, err := jspromise.Await(js.Global().Call("fetch", url, init))
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
	r := &CDNResponse{Status: resp.Get("status").Int(), ContentLength: -1, Body: body}
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
		r, err := jspromise.Await(b.reader.Call("read"))
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

// defaultTransports: the browser's fetch for the CDN and its WebSocket for
// the tracker (signaling.Dial), keeping net/http out of the wasm binary.
func defaultTransports(c *Config) {
	if c.CDN == nil {
		c.CDN = FetchCDN{}
	}
	if c.Dial == nil {
		c.Dial = func(ctx context.Context, url, origin string) (*signaling.Client, error) {
			return signaling.Dial(ctx, url, &signaling.DialOptions{Origin: origin})
		}
	}
}
