//go:build js && wasm

// Command wasm is the agent compiled for the browser: a thin syscall/js
// layer that the loader (peercdn.js) drives through globalThis.__peercdn.
package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"syscall/js"
	"time"

	"github.com/peercdn/peercdn/agent"
	"github.com/peercdn/peercdn/peerwire"
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
	// HashManifests: the CDN publishes peercdn-hashes.json (true) or not
	// (false); absent, the tracker says.
	HashManifests *bool `json:"hashManifests"`
}

var (
	a      *agent.Agent
	cancel context.CancelFunc
	done   chan struct{}
	// final is the agent's last stats, kept after destroy: a page's totals
	// do not drop to what the player loads alone.
	final = "{}"

	// loads are the loads in flight, by the page's id, to cancel when the
	// player aborts them (a seek, a quality switch, the player destroyed).
	loadsMu sync.Mutex
	loads   = map[int]context.CancelFunc{}
)

func main() {
	api := js.Global().Get("Object").New()
	api.Set("start", js.FuncOf(start))
	api.Set("load", js.FuncOf(load))
	api.Set("adopt", js.FuncOf(adopt))
	api.Set("stats", js.FuncOf(stats))
	api.Set("destroy", js.FuncOf(destroy))
	api.Set("report", js.FuncOf(report))
	api.Set("cancel", js.FuncOf(cancelLoad))
	api.Set("flush", js.FuncOf(flush))
	api.Set("configure", js.FuncOf(configure))
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
		HashManifests:        o.HashManifests,
		// Each peer connection costs the page's main thread: a late
		// joiner's five at once kept it busy as playback began.
		DialsAtOnce: 2,
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

// segmentRequest names a segment as the page's loads and adoptions do.
type segmentRequest struct {
	Content  string `json:"content"`  // site's content id, or empty
	Manifest string `json:"manifest"` // the player's manifest URL
	URL      string `json:"url"`      // the segment
	// Range, for a segment that is a byte range of URL (DASH SegmentBase
	// and SegmentList, HLS byte ranges): "first-last" or a Range header's
	// "bytes=first-last".
	Range string `json:"range,omitempty"`
}

func (r segmentRequest) request() (agent.Request, error) {
	rng, ranged, err := signaling.ParseRange(r.Range)
	if err != nil {
		return agent.Request{}, err
	}
	if !ranged {
		return agent.SegmentByURL(r.Content, r.Manifest, r.URL), nil
	}
	return agent.SegmentByRange(r.Content, r.Manifest, r.URL, &rng), nil
}

// maxSegmentMs bounds the media duration a page may give a segment (an
// hour): anything longer is a page's mistake, and ignored.
const maxSegmentMs = 3600e3

// load(reqJSON, id) returns a Promise of {data: Uint8Array, source,
// transferMs, abrMs, abrFirstByteMs, why} (see agent.Result); cancel(id) ends
// it (the Promise rejects), so that an aborted load costs nothing more.
func load(_ js.Value, args []js.Value) any {
	var r struct {
		segmentRequest
		DeadlineMs float64 `json:"deadlineMs"` // buffer ahead of the playhead
		DurationMs float64 `json:"durationMs"` // the segment's media, 0 unknown
	}
	raw := args[0].String()
	ctx, stop := context.WithCancel(context.Background())
	if len(args) > 1 && args[1].Type() == js.TypeNumber {
		id := args[1].Int()
		loadsMu.Lock()
		loads[id] = stop
		loadsMu.Unlock()
		inner := stop
		stop = func() {
			inner()
			loadsMu.Lock()
			delete(loads, id)
			loadsMu.Unlock()
		}
	}
	ag := a
	return promise(func() (any, error) {
		defer stop()
		if ag == nil {
			return nil, errString("peercdn: not started")
		}
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return nil, err
		}
		req, err := r.request()
		if err != nil {
			return nil, err
		}
		req.Deadline = time.Now().Add(time.Duration(r.DeadlineMs * float64(time.Millisecond)))
		if r.DurationMs > 0 && r.DurationMs <= maxSegmentMs { // a page's figure: bounded
			req.Duration = time.Duration(r.DurationMs * float64(time.Millisecond))
		}
		res, err := ag.Load(ctx, req)
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
		if res.Why != "" {
			out.Set("why", res.Why)
		}
		return out, nil
	})
}

// adopt(reqJSON, Uint8Array[, firstByteMs, totalMs]) gives the agent a
// segment the player fetched from the CDN on its own (agent.Adopt): it is
// shared as the agent's own CDN copies are; the load's times, when the
// browser did not serve it from its cache, count in the agent's CDN
// figures (agent.ObservePlayerCDN).
func adopt(_ js.Value, args []js.Value) any {
	if a == nil || len(args) < 2 || args[1].Type() != js.TypeObject {
		return nil
	}
	var r segmentRequest
	if err := json.Unmarshal([]byte(args[0].String()), &r); err != nil {
		return err.Error()
	}
	req, err := r.request()
	if err != nil {
		return err.Error()
	}
	n := args[1].Get("byteLength").Int()
	if n <= 0 || n > peerwire.MaxSegmentSize {
		return nil
	}
	data := make([]byte, n)
	js.CopyBytesToGo(data, args[1])
	ag := a
	if len(args) >= 4 && args[2].Type() == js.TypeNumber && args[3].Type() == js.TypeNumber {
		ms := func(v js.Value) time.Duration { return time.Duration(v.Float() * float64(time.Millisecond)) }
		ag.ObservePlayerCDN(n, ms(args[2]), ms(args[3]))
	}
	go func() {
		ctx, stop := context.WithTimeout(context.Background(), 15*time.Second)
		defer stop()
		ag.Adopt(ctx, req, data) // joins its swarm first: peers connect now, not at the player's next load
	}()
	return nil
}

// cancelLoad(id) cancels a load in flight.
func cancelLoad(_ js.Value, args []js.Value) any {
	if len(args) == 0 || args[0].Type() != js.TypeNumber {
		return nil
	}
	loadsMu.Lock()
	stop := loads[args[0].Int()]
	loadsMu.Unlock()
	if stop != nil {
		stop()
	}
	return nil
}

// flush() sends the agent's usage report now: the page is being hidden or
// closed, and a closed tab's report would otherwise wait for a heartbeat
// that never comes. It runs on the event loop and does not wait for JS.
func flush(js.Value, []js.Value) any {
	if a != nil {
		a.Flush()
	}
	return nil
}

func stats(js.Value, []js.Value) any {
	if a == nil {
		return final
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
			b, _ := json.Marshal(a.Stats())
			final = string(b)
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

// configure(optionsJSON) applies the options a running agent takes
// (agent.Live: upload, uploadBytesPerSecond, maxPeers, maxWaitMs,
// cdnSafetyMs) and returns an error message, or null. Absent options keep
// their values.
func configure(_ js.Value, args []js.Value) any {
	if a == nil || len(args) == 0 {
		return "agent not running"
	}
	var o struct {
		Upload      *bool `json:"upload"`
		UploadLimit *int  `json:"uploadBytesPerSecond"`
		MaxPeers    *int  `json:"maxPeers"`
		MaxWaitMs   *int  `json:"maxWaitMs"`
		CDNSafetyMs *int  `json:"cdnSafetyMs"`
	}
	if err := json.Unmarshal([]byte(args[0].String()), &o); err != nil {
		return err.Error()
	}
	var l agent.Live
	if o.Upload != nil {
		consume := !*o.Upload
		l.ConsumeOnly = &consume
	}
	l.UploadBytesPerSecond, l.MaxPeers = o.UploadLimit, o.MaxPeers
	ms := func(p *int) *time.Duration {
		if p == nil {
			return nil
		}
		d := time.Duration(*p) * time.Millisecond
		return &d
	}
	l.MaxWait, l.CDNSafety = ms(o.MaxWaitMs), ms(o.CDNSafetyMs)
	if err := a.Configure(l); err != nil {
		return err.Error()
	}
	return nil
}
