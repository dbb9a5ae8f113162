//go:build js && wasm

package agent

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"syscall/js"
	"time"

	"github.com/peercdn/peercdn/internal/jspromise"
	"github.com/peercdn/peercdn/peerwire"
	"github.com/peercdn/peercdn/signaling"
)

// FetchCDN is CDN over the browser's fetch. Get returns when the
// response's headers arrive, so that the agent times the CDN's first byte
// as the player would (the ABR figures it hands the player); reading the
// whole body before returning made a CDN at 1.2 Mbit/s look like 4-9
// Mbit/s to hls.js. The body is then taken whole (wholeBody), or
// streamed where only part of it is wanted (streamBody).
type FetchCDN struct{}

// Get implements CDN.
func (FetchCDN) Get(ctx context.Context, url string, first, last int64) (*CDNResponse, error) {
	init := js.Global().Get("Object").New()
	ranged := rangeHeader(first, last)
	if ranged != "" {
		h := js.Global().Get("Object").New()
		h.Set("Range", ranged)
		init.Set("headers", h)
	}
	ac := js.Global().Get("AbortController").New()
	init.Set("signal", ac.Get("signal"))
	stop := context.AfterFunc(ctx, func() { ac.Call("abort") })
	resp, at, err := jspromise.AwaitAt(js.Global().Call("fetch", url, init))
	if err != nil {
		stop()
		return nil, err
	}
	// The length is what arrives: Content-Length may count compressed
	// bytes, and a body cut short makes the read reject.
	status := resp.Get("status").Int()
	abort := func() { ac.Call("abort") }
	var body io.ReadCloser = &wholeBody{resp: resp, stop: stop, abort: abort}
	if (status == 200 && ranged != "") || declaredLength(resp) > peerwire.MaxSegmentSize {
		// A CDN that ignores Range sends the whole file, of which the
		// agent reads only up to the range; a body too large for a
		// segment is read only until that shows. Neither is buffered
		// whole.
		sb := &streamBody{stop: stop, abort: abort}
		if b := resp.Get("body"); b.Truthy() {
			sb.reader = b.Call("getReader")
		}
		body = sb
	}
	r := &CDNResponse{Status: status, ContentLength: -1, Body: body, HeadersAt: at}
	if cr := resp.Get("headers").Call("get", "Content-Range"); cr.Type() == js.TypeString {
		r.ContentRange = cr.String()
	}
	return r, nil
}

// declaredLength is the response's Content-Length, or -1.
func declaredLength(resp js.Value) int64 {
	v := resp.Get("headers").Call("get", "Content-Length")
	if v.Type() != js.TypeString {
		return -1
	}
	n, err := strconv.ParseInt(v.String(), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// wholeBody reads a fetch response's body in one piece (arrayBuffer), at
// the first Read: one wait for the page's main thread, as the load event
// of hls.js's own XHR is. Reading the body's stream chunk by chunk waited
// for the main thread once per chunk, and on a page decoding video those
// waits added up: the agent measured the CDN slower than the player
// measures it, and handed that to the player's ABR.
type wholeBody struct {
	resp  js.Value
	rest  *bytes.Reader // the body once arrived; nil until the first Read
	at    time.Time     // when it arrived (arrival)
	stop  func() bool
	abort func()
}

func (b *wholeBody) arrived() time.Time { return b.at }

func (b *wholeBody) Read(p []byte) (int, error) {
	if b.rest == nil {
		b.rest = bytes.NewReader(nil)
		ab, at, err := jspromise.AwaitAt(b.resp.Call("arrayBuffer"))
		if err != nil {
			return 0, err
		}
		b.at = at
		v := js.Global().Get("Uint8Array").New(ab)
		buf := make([]byte, v.Length())
		js.CopyBytesToGo(buf, v)
		b.rest.Reset(buf)
	}
	return b.rest.Read(p)
}

// Close stops the transfer if the body was not asked for.
func (b *wholeBody) Close() error {
	if b.rest == nil {
		b.abort()
	}
	b.rest = nil
	b.stop()
	return nil
}

// streamBody reads a fetch response's ReadableStream chunk by chunk.
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
