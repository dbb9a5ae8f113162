//go:build js && wasm

package agent

import (
	"github.com/peercdn/peercdn/internal/jspromise"

	"errors"
	"fmt"
	"sync"
	"syscall/js"

	"github.com/peercdn/peercdn/signaling"
)

// browserAPI is the browser's own WebRTC through syscall/js: the wasm then
// carries no WebRTC stack of its own.
type browserAPI struct{}

func newAPI(*Config) rtcAPI { return browserAPI{} }

var (
	jsObject     = js.Global().Get("Object")
	jsArray      = js.Global().Get("Array")
	jsUint8Array = js.Global().Get("Uint8Array")
	// ignore swallows promise rejections nobody waits for.
	ignore = js.FuncOf(func(js.Value, []js.Value) any { return nil })
)

func (browserAPI) NewPeerConnection(servers []signaling.ICEServer) (pc peerConn, err error) {
	defer catch(&err)
	ctor := js.Global().Get("RTCPeerConnection")
	if ctor.IsUndefined() {
		return nil, errors.New("agent: this browser has no RTCPeerConnection")
	}
	ice := jsArray.New()
	for _, s := range servers {
		urls := jsArray.New()
		for _, u := range s.URLs {
			urls.Call("push", u)
		}
		o := jsObject.New()
		o.Set("urls", urls)
		if s.Username != "" {
			o.Set("username", s.Username)
			o.Set("credential", s.Credential)
		}
		ice.Call("push", o)
	}
	cfg := jsObject.New()
	cfg.Set("iceServers", ice)
	return &browserPC{v: ctor.New(cfg)}, nil
}

// catch turns a JavaScript exception thrown by a call into an error.
func catch(err *error) {
	if r := recover(); r != nil {
		if e, ok := r.(js.Error); ok {
			*err = e
			return
		}
		*err = fmt.Errorf("agent: %v", r)
	}
}

// handlers are the event handlers a wrapper set on a JS object, released
// together.
type handlers struct {
	mu    sync.Mutex
	v     js.Value
	names []string
	funcs []js.Func
}

// on sets v.on<event>. f runs inside the JS callback: it must not block.
func (h *handlers) on(event string, f func(ev js.Value)) {
	fn := js.FuncOf(func(_ js.Value, a []js.Value) any {
		ev := js.Undefined()
		if len(a) > 0 {
			ev = a[0]
		}
		f(ev)
		return nil
	})
	h.mu.Lock()
	h.names = append(h.names, event)
	h.funcs = append(h.funcs, fn)
	h.mu.Unlock()
	h.v.Set("on"+event, fn)
}

func (h *handlers) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range h.names {
		h.v.Set("on"+n, js.Null())
	}
	for _, f := range h.funcs {
		f.Release()
	}
	h.names, h.funcs = nil, nil
}

type browserPC struct {
	v  js.Value
	h  *handlers
	mu sync.Mutex
	dc []*browserDC
}

func (p *browserPC) handlers() *handlers {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h == nil {
		p.h = &handlers{v: p.v}
	}
	return p.h
}

func (p *browserPC) track(d *browserDC) {
	p.mu.Lock()
	p.dc = append(p.dc, d)
	p.mu.Unlock()
}

func (p *browserPC) CreateDataChannel(label string) (dc dataChannel, err error) {
	defer catch(&err)
	init := jsObject.New()
	init.Set("ordered", true)
	d := wrapDC(p.v.Call("createDataChannel", label, init))
	p.track(d)
	return d, nil
}

func (p *browserPC) OnDataChannel(f func(dataChannel)) {
	p.handlers().on("datachannel", func(ev js.Value) {
		// Wrapped at once, so no message is missed before f runs.
		d := wrapDC(ev.Get("channel"))
		p.track(d)
		go f(d)
	})
}

func (p *browserPC) OnICECandidate(f func(string)) {
	p.handlers().on("icecandidate", func(ev js.Value) {
		c := ev.Get("candidate")
		s := ""
		if !c.IsNull() && !c.IsUndefined() {
			s = c.Get("candidate").String()
		}
		go f(s)
	})
}

func (p *browserPC) OnGone(f func()) {
	p.handlers().on("connectionstatechange", func(js.Value) {
		switch p.v.Get("connectionState").String() {
		case "failed", "closed", "disconnected":
			go f()
		}
	})
}

func (p *browserPC) describe(create string) (sdp string, err error) {
	defer catch(&err)
	desc, err := jspromise.Await(p.v.Call(create))
	if err != nil {
		return "", err
	}
	if _, err := jspromise.Await(p.v.Call("setLocalDescription", desc)); err != nil {
		return "", err
	}
	return desc.Get("sdp").String(), nil
}

func (p *browserPC) CreateOffer() (string, error)  { return p.describe("createOffer") }
func (p *browserPC) CreateAnswer() (string, error) { return p.describe("createAnswer") }

func (p *browserPC) LocalDescription() (sdp string) {
	defer func() {
		if recover() != nil {
			sdp = ""
		}
	}()
	d := p.v.Get("localDescription")
	if d.IsNull() || d.IsUndefined() {
		return ""
	}
	return d.Get("sdp").String()
}

func (p *browserPC) SetRemoteDescription(offer bool, sdp string) (err error) {
	defer catch(&err)
	d := jsObject.New()
	if offer {
		d.Set("type", "offer")
	} else {
		d.Set("type", "answer")
	}
	d.Set("sdp", sdp)
	_, err = jspromise.Await(p.v.Call("setRemoteDescription", d))
	return err
}

func (p *browserPC) AddICECandidate(c string) (err error) {
	defer catch(&err)
	o := jsObject.New()
	o.Set("candidate", c)
	o.Set("sdpMLineIndex", 0) // data-channel-only sessions have one m-line
	p.v.Call("addIceCandidate", o).Call("catch", ignore)
	return nil
}

// Close closes the connection and releases every handler: closing a
// connection closes its channels without firing their close events.
func (p *browserPC) Close() (err error) {
	defer catch(&err)
	p.handlers().release()
	p.mu.Lock()
	dcs := p.dc
	p.dc = nil
	p.mu.Unlock()
	for _, d := range dcs {
		d.h.release()
		d.stop()
	}
	p.v.Call("close")
	return nil
}

// browserDC is an RTCDataChannel. Messages are copied into Go and queued
// inside the JS callback, and handed to OnMessage's function in order by
// one goroutine, so a slow handler never blocks the browser.
type browserDC struct {
	v js.Value
	h *handlers

	mu      sync.Mutex
	queue   []message
	onMsg   func([]byte, bool)
	onOpen  func()
	onClose func()
	onLow   func()
	opened  bool
	wake    chan struct{}

	sendMu  sync.Mutex
	sendBuf js.Value // Send's buffer, of sendLen bytes
	sendLen int
	done    chan struct{}
	once    sync.Once
}

type message struct {
	data []byte
	text bool
}

func wrapDC(v js.Value) *browserDC {
	d := &browserDC{v: v, h: &handlers{v: v}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	v.Set("binaryType", "arraybuffer")
	d.h.on("message", func(ev js.Value) {
		data := ev.Get("data")
		var m message
		if data.Type() == js.TypeString {
			m.text = true
		} else {
			u8 := jsUint8Array.New(data)
			m.data = make([]byte, u8.Get("length").Int())
			js.CopyBytesToGo(m.data, u8)
		}
		d.mu.Lock()
		d.queue = append(d.queue, m)
		d.mu.Unlock()
		d.signal()
	})
	d.h.on("open", func(js.Value) {
		d.mu.Lock()
		d.opened = true
		f := d.onOpen
		d.mu.Unlock()
		if f != nil {
			go f()
		}
	})
	d.h.on("close", func(js.Value) {
		d.mu.Lock()
		f := d.onClose
		d.mu.Unlock()
		d.h.release()
		d.stop()
		if f != nil {
			go f()
		}
	})
	d.h.on("bufferedamountlow", func(js.Value) {
		d.mu.Lock()
		f := d.onLow
		d.mu.Unlock()
		if f != nil {
			go f()
		}
	})
	go d.deliver()
	return d
}

func (d *browserDC) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *browserDC) stop() { d.once.Do(func() { close(d.done) }) }

func (d *browserDC) deliver() {
	for {
		select {
		case <-d.wake:
		case <-d.done:
			return
		}
		for {
			d.mu.Lock()
			if len(d.queue) == 0 || d.onMsg == nil {
				d.mu.Unlock()
				break
			}
			m := d.queue[0]
			d.queue[0] = message{}
			d.queue = d.queue[1:]
			f := d.onMsg
			d.mu.Unlock()
			f(m.data, m.text)
		}
	}
}

func (d *browserDC) Label() string { return d.v.Get("label").String() }
func (d *browserDC) IsOpen() bool  { return d.v.Get("readyState").String() == "open" }

// Send copies b into a JS buffer and sends it. send() copies what it is
// given before it returns, so the buffer is kept for the next message of
// the same size (nearly every chunk of an upload) rather than a new
// ArrayBuffer allocated, and collected, per message: sending took 2.3 s of
// a viewer's main thread in a field run before, 0.7 s after (one run each).
func (d *browserDC) Send(b []byte) (err error) {
	defer catch(&err)
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	if d.sendBuf.IsUndefined() || d.sendLen != len(b) {
		d.sendBuf, d.sendLen = jsUint8Array.New(len(b)), len(b)
	}
	js.CopyBytesToJS(d.sendBuf, b)
	d.v.Call("send", d.sendBuf)
	return nil
}

func (d *browserDC) BufferedAmount() uint64 { return uint64(d.v.Get("bufferedAmount").Float()) }

func (d *browserDC) SetBufferedAmountLowThreshold(n uint64) {
	d.v.Set("bufferedAmountLowThreshold", float64(n))
}

func (d *browserDC) OnBufferedAmountLow(f func()) {
	d.mu.Lock()
	d.onLow = f
	d.mu.Unlock()
}

func (d *browserDC) OnOpen(f func()) {
	d.mu.Lock()
	d.onOpen = f
	opened := d.opened
	d.mu.Unlock()
	if opened {
		go f() // opened before the handler was set
	}
}

func (d *browserDC) OnClose(f func()) {
	d.mu.Lock()
	d.onClose = f
	d.mu.Unlock()
}

func (d *browserDC) OnMessage(f func([]byte, bool)) {
	d.mu.Lock()
	d.onMsg = f
	d.mu.Unlock()
	d.signal() // messages that came first
}

func (d *browserDC) Close() (err error) {
	defer catch(&err)
	d.v.Call("close")
	return nil
}
