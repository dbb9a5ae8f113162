//go:build js && wasm

// Command wasm is the agent compiled for the browser: a thin syscall/js
// layer that the loader (peercdn.js) drives through globalThis.__peercdn.
package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"syscall/js"
	"time"

	"github.com/peercdn/peercdn/agent"
	"github.com/peercdn/peercdn/signaling"
)

// options is what peercdn.js passes to start, as JSON.
type options struct {
	Tracker     string                `json:"tracker"`
	CacheMB     int                   `json:"cacheMB"`
	Upload      *bool                 `json:"upload"`
	MaxPeers    int                   `json:"maxPeers"`
	Mobile      bool                  `json:"mobile"`
	ICEServers  []signaling.ICEServer `json:"iceServers"`
	AllowRelay  bool                  `json:"allowRelay"`
	UploadLimit int                   `json:"uploadBytesPerSecond"`
	Debug       bool                  `json:"debug"`
	CDNSafetyMs int                   `json:"cdnSafetyMs"`
	MaxWaitMs   int                   `json:"maxWaitMs"`
}

var (
	a      *agent.Agent
	cancel context.CancelFunc
	done   chan struct{}
)

func main() {
	api := js.Global().Get("Object").New()
	api.Set("start", js.FuncOf(start))
	api.Set("load", js.FuncOf(load))
	api.Set("stats", js.FuncOf(stats))
	api.Set("destroy", js.FuncOf(destroy))
	api.Set("report", js.FuncOf(report))
	js.Global().Set("__peercdn", api)
	select {} // serve calls from JS forever
}

func start(_ js.Value, args []js.Value) any {
	var o options
	if len(args) > 0 {
		if err := json.Unmarshal([]byte(args[0].String()), &o); err != nil {
			return err.Error()
		}
	}
	cfg := agent.Config{
		TrackerURL:           o.Tracker,
		MaxPeers:             o.MaxPeers,
		Mobile:               o.Mobile,
		ConsumeOnly:          o.Upload != nil && !*o.Upload,
		UploadBytesPerSecond: o.UploadLimit,
		ICEServers:           o.ICEServers,
		AllowRelay:           o.AllowRelay,
		CDN:                  fetchCDN{},
		Dial:                 dialWS,
	}
	// Browsers also parse, append and decode after the load, on a busy
	// main thread: keep a larger reserve than native viewers.
	cfg.CDNSafety = 1500 * time.Millisecond
	if o.CDNSafetyMs > 0 {
		cfg.CDNSafety = time.Duration(o.CDNSafetyMs) * time.Millisecond
	}
	if o.MaxWaitMs > 0 {
		cfg.MaxWait = time.Duration(o.MaxWaitMs) * time.Millisecond
	}
	if o.CacheMB > 0 {
		cfg.CacheBytes = int64(o.CacheMB) << 20
	}
	level := slog.LevelWarn
	if o.Debug {
		level = slog.LevelDebug
	}
	cfg.Log = slog.New(slog.NewTextHandler(console{}, &slog.HandlerOptions{Level: level}))
	cfg.OnEvent = func(e agent.Event) {
		cb := js.Global().Get("__peercdnEvent")
		if cb.Type() != js.TypeFunction {
			return
		}
		b, _ := json.Marshal(e)
		cb.Invoke(string(e.Kind), string(b))
	}
	var err error
	a, err = agent.New(cfg)
	if err != nil {
		return err.Error()
	}
	var ctx context.Context
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() {
		defer close(done)
		a.Run(ctx)
	}()
	return nil
}

// load(reqJSON) returns a Promise of {data: Uint8Array, source, transferMs,
// abrMs, abrFirstByteMs} (see agent.Result).
func load(_ js.Value, args []js.Value) any {
	var r struct {
		Content    string  `json:"content"`    // site's content id, or empty
		Manifest   string  `json:"manifest"`   // the player's manifest URL
		URL        string  `json:"url"`        // the segment
		DeadlineMs float64 `json:"deadlineMs"` // buffer ahead of the playhead
	}
	raw := args[0].String()
	return promise(func() (any, error) {
		if a == nil {
			return nil, errString("peercdn: not started")
		}
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return nil, err
		}
		req := agent.SegmentByURL(r.Content, r.Manifest, r.URL)
		req.Deadline = time.Now().Add(time.Duration(r.DeadlineMs * float64(time.Millisecond)))
		res, err := a.Load(context.Background(), req)
		if err != nil {
			return nil, err
		}
		// A fresh buffer per call: players may transfer (detach) it.
		data := js.Global().Get("Uint8Array").New(len(res.Data))
		js.CopyBytesToJS(data, res.Data)
		out := js.Global().Get("Object").New()
		out.Set("data", data)
		out.Set("source", string(res.Source))
		out.Set("transferMs", float64(res.Transfer)/float64(time.Millisecond))
		out.Set("abrMs", float64(res.ABR)/float64(time.Millisecond))
		out.Set("abrFirstByteMs", float64(res.ABRFirstByte)/float64(time.Millisecond))
		return out, nil
	})
}

func stats(js.Value, []js.Value) any {
	if a == nil {
		return "{}"
	}
	b, _ := json.Marshal(a.Stats())
	return string(b)
}

// report(cdnBytes, stallMs) tells the agent what the player got from the
// CDN on its own and how long it stalled, for the tracker's usage figures.
func report(_ js.Value, args []js.Value) any {
	if a == nil || len(args) < 2 {
		return nil
	}
	a.ReportPlayerCDN(int64(args[0].Float()))
	if ms := args[1].Float(); ms > 0 {
		a.ReportStall(time.Duration(ms * float64(time.Millisecond)))
	}
	return nil
}

func destroy(js.Value, []js.Value) any {
	return promise(func() (any, error) {
		if cancel != nil {
			cancel()
			<-done
			cancel, a = nil, nil
		}
		return nil, nil
	})
}

// promise runs f in a goroutine (blocking calls must not run on the JS
// event loop's callback) and settles a Promise with its result.
func promise(f func() (any, error)) js.Value {
	var handler js.Func
	handler = js.FuncOf(func(_ js.Value, args []js.Value) any {
		resolve, reject := args[0], args[1]
		go func() {
			defer handler.Release()
			v, err := f()
			if err != nil {
				reject.Invoke(js.Global().Get("Error").New(err.Error()))
				return
			}
			resolve.Invoke(v)
		}()
		return nil
	})
	return js.Global().Get("Promise").New(handler)
}

type errString string

func (e errString) Error() string { return string(e) }

// console writes slog output to the browser console.
type console struct{}

func (console) Write(p []byte) (int, error) {
	js.Global().Get("console").Call("debug", string(p))
	return len(p), nil
}
