//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/performance"
	"github.com/chromedp/cdproto/profiler"
	"github.com/chromedp/chromedp"
)

// TestField is the harness of bench/field.sh (FIELD=1), shaped like the
// independent one that compared peercdn with p2p-media-loader: one
// headless Chromium, a browser context per viewer, viewers joining GAP
// apart; hls.js with its defaults (ABR on) but enableWorker false, on a
// bare page of the site's own origin, through peercdn's script tag, and,
// joining among them in the same run, plain hls.js viewers; a CDN on
// its own origin (port) with 30 ms of latency, an optional per-response
// rate, and no hash manifest; the tracker with serve's defaults (the
// demo's notary may fetch from loopback, as it would from a public CDN).
// After the last join it lets them play WINDOW, then prints one JSON line
// (FIELD_OUT appends it to a file):
//
//   - offload from the pages' counters, over the peercdn viewers, and the
//     CDN's view (its segment bytes, less the plain viewers', notary
//     fetches included);
//   - startup (hls.loadSource to the first 'playing') medians, peercdn and
//     plain;
//   - rebuffers; the hls.js bandwidth estimates; the renditions played.
//
// Settings (environment): FIELD_VIEW live|vod, FIELD_VIEWERS (6),
// FIELD_PLAIN (3), FIELD_GAP (2s), FIELD_WINDOW (90s), FIELD_STREAM (a
// folder for serve --demo-stream; empty: the built-in 60 s sample), FIELD_CDN_KBPS (0:
// unpaced), FIELD_LEVEL (a fixed rendition; empty: ABR), FIELD_ARGS (more
// serve flags), FIELD_QUERY (page options for the peercdn viewers),
// FIELD_PROFILE (a file for the last peercdn viewer's main thread
// profile, .cpuprofile), FIELD_WARMUP (4s: a plain viewer first, not
// counted; 0: none).
func TestField(t *testing.T) {
	if os.Getenv("FIELD") == "" {
		t.Skip("the field harness runs from bench/field.sh (FIELD=1)")
	}
	env := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	atoi := func(k, def string) int {
		n, err := strconv.Atoi(env(k, def))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return n
	}
	dur := func(k, def string) time.Duration {
		d, err := time.ParseDuration(env(k, def))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return d
	}
	view, n, nPlain := env("FIELD_VIEW", "live"), atoi("FIELD_VIEWERS", "6"), atoi("FIELD_PLAIN", "3")
	gap, window, kbps, level := dur("FIELD_GAP", "2s"), dur("FIELD_WINDOW", "90s"), env("FIELD_CDN_KBPS", "0"), env("FIELD_LEVEL", "")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cdn := ln.Addr().String()
	ln.Close()
	args := []string{"--demo", "--demo-no-hash-manifest", "--demo-origin-listen", cdn,
		"--demo-cdn-latency", "30ms", "--demo-cdn-kbps", kbps}
	if st := env("FIELD_STREAM", ""); st != "" {
		args = append(args, "--demo-stream", st) // a stream of the outside harness's shape (bench/field.sh)
	}
	if extra := env("FIELD_ARGS", ""); extra != "" {
		args = append(args, strings.Fields(extra)...)
	}
	addr, _ := serve(t, args...)
	src := "http://" + cdn + "/" + view + "/master.m3u8"
	// The site: a bare page on its own origin, as the outside harness's
	// (a video, hls.js, and for peercdn viewers the script tag from the
	// tracker). The demo page drew a chart and a log every second, and
	// its plain variant still loaded peercdn.js, whose agent then started
	// with no player: load on every page that no real site carries.
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, fieldPage(addr, r.URL.Query()))
	}))
	t.Cleanup(site.Close)
	page := func(plain bool) string {
		q := url.Values{"src": {src}}
		if plain {
			q.Set("plain", "1")
		} else {
			if extra, err := url.ParseQuery(env("FIELD_QUERY", "")); err == nil { // page options, e.g. startDelayMs=0
				for k, v := range extra {
					q[k] = v
				}
			}
			if os.Getenv("FIELD_DEBUG") != "" {
				q.Set("trace", "1")
			}
		}
		if level != "" {
			q.Set("level", level)
		}
		return site.URL + "/?" + q.Encode()
	}

	// Plain viewers join among the peercdn ones, each after an equal share
	// of them (the last after the last): late joiners start on a busier
	// machine, so both kinds must join late too.
	var order []bool // plain?
	for i := range n {
		order = append(order, false)
		if nPlain > 0 && (i+1)%max(1, n/nPlain) == 0 && countTrue(order) < nPlain {
			order = append(order, true)
		}
	}
	alloc := newBrowser(t)
	// A plain viewer plays FIELD_WARMUP (4s) first and leaves, counted
	// nowhere: the run's first page paid for a cold browser, origin and
	// disk cache (700-1,050 ms to its first frame where the pages after
	// it took 300-600 ms), and the join order made it a peercdn viewer
	// in every run.
	var warmSegs int64
	if warmup := dur("FIELD_WARMUP", "4s"); warmup > 0 {
		warm := viewer(t, alloc, page(true))
		time.Sleep(warmup)
		if err := chromedp.Cancel(warm); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond) // its loads under way end
		_, warmSegs = originStats(t, addr)
	}
	type joined struct {
		ctx   context.Context
		plain bool
	}
	var views []joined
	for i, plain := range order {
		v := viewer(t, alloc, page(plain))
		// The main thread's time, for what the agent costs a page (its
		// startup, its peers) beside a plain one on the same cores.
		if _, err := chromedp.Call(v, performance.Enable, performance.EnableParams{}); err != nil {
			t.Fatal(err)
		}
		if prof := os.Getenv("FIELD_PROFILE"); prof != "" && !plain && countFalse(order[:i]) == n-1 {
			// The last peercdn viewer's main thread (the late joiner, on
			// the busiest machine), sampled from its start to the end (a
			// .cpuprofile for Chromium's DevTools).
			for _, c := range []cdp.Command[cdp.Empty, cdp.Empty]{profiler.Enable, profiler.Start} {
				if _, err := chromedp.Call(v, c, cdp.Empty{}); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() {
				r, err := chromedp.Call(v, profiler.Stop, cdp.Empty{})
				if err == nil {
					var b []byte
					if b, err = json.Marshal(r.Profile); err == nil {
						err = os.WriteFile(prof, b, 0o644)
					}
				}
				if err != nil {
					t.Errorf("FIELD_PROFILE: %v", err)
				}
			})
		}
		views = append(views, joined{v, plain})
		if i < len(order)-1 {
			time.Sleep(gap)
		}
	}
	time.Sleep(window)
	if os.Getenv("FIELD_DEBUG") != "" {
		// The last peercdn viewer's start: its loads, in page time.
		last := views[len(views)-1].ctx
		tl, err := chromedp.Run(last, chromedp.Evaluate[string](`JSON.stringify({
  loadSourceAt: window.__loadSourceAt, firstFrame: window.__qa.firstFrameMs, ready: window.__readyAt,
  loads: performance.getEntriesByType('resource').filter(e => e.startTime < window.__qa.firstFrameMs + 500)
    .map(e => [e.name.replace(/^https?:\/\/[^/]+/, ''), e.initiatorType, Math.round(e.startTime), Math.round(e.responseStart), Math.round(e.responseEnd), e.transferSize])})`))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("the last viewer's start: %s", tl)
		// Each peercdn viewer's loads: how each segment came, in order.
		for i, v := range views {
			if v.plain {
				continue
			}
			tr, err := chromedp.Run(v.ctx, chromedp.Evaluate[string](`JSON.stringify((window.__peercdnTrace || []).concat((window.__qa.stallAt || []).map(t => ['', t, 'stall', 0])))`))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("viewer %d loads: %s", i, tr)
		}
	}

	type pageFigures struct {
		Sample   sample
		StartMs  float64 `json:"startMs"`
		BW       float64 `json:"bw"`
		Level    int     `json:"level"`
		NetBytes int64   `json:"netBytes"`
		Entries  int     `json:"entries"`
	}
	var res struct {
		View, CDNKbps, Level                   string
		Viewers, Plain                         int
		Offload, CDNOffload                    float64
		P2PBytes, CDNBytes, PlainBytes, Origin int64
		StartupMs, PlainStartupMs              float64
		Rebuffers, PlainRebuffers              int
		BandwidthMbps, PlainBandwidthMbps      []float64
		Levels                                 []int
		StartupsMs, PlainStartupsMs            []float64
		PerViewerOffload                       []float64
		Window, Gap                            string
		// PagesNetBytes: what the peercdn pages took from the network, by
		// Resource Timing (the page's own loads: the agent worker's fetches
		// are not in its timeline); NotaryFetches: segments the tracker fetched;
		// NotaryDigests: segments it vouched for by the CDN's digest
		// (FIELD_ARGS=--demo-cdn-digest), fetching none.
		PagesNetBytes                int64
		NotaryFetches, NotaryDigests float64
		// Args: FIELD_ARGS, serve's extra flags.
		Args string
		// MainThreadS: each page's main thread busy time over the run
		// (its tasks, in seconds; Chromium's TaskDuration), peercdn and
		// plain.
		MainThreadS, PlainMainThreadS []float64
		// Relays: offers, answers and candidates the tracker passed on.
		Relays float64
	}
	res.View, res.CDNKbps, res.Level, res.Viewers, res.Plain = view, kbps, level, n, nPlain
	res.Window, res.Gap = window.String(), gap.String()
	// netBytes: the media segment bytes this page took from the network
	// (Resource Timing; the CDN sends Timing-Allow-Origin), cache hits
	// excluded: the pages' side of the CDN's count.
	js := `JSON.stringify({startMs: window.__qa.firstFrameMs - window.__loadSourceAt, bw: demoPlayer.bandwidthEstimate, level: demoPlayer.currentLevel,
  netBytes: performance.getEntriesByType('resource').filter(e => /\.m4s(\?|$)/.test(e.name) && e.transferSize > 0).reduce((a, e) => a + e.encodedBodySize, 0),
  entries: performance.getEntriesByType('resource').length})`
	for i, v := range views {
		s := read(t, v.ctx)
		raw, err := chromedp.Run(v.ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatal(err)
		}
		var f pageFigures
		if err := json.Unmarshal([]byte(raw), &f); err != nil {
			t.Fatal(err)
		}
		if f.Entries >= 250 {
			t.Logf("a page's resource timing buffer is full (%d entries): its network bytes are undercounted", f.Entries)
		}
		if os.Getenv("FIELD_DEBUG") != "" {
			// What hls.js's bandwidth samples were made of: medians over
			// the fragments it still lists, in ms.
			ft, err := chromedp.Run(v.ctx, chromedp.Evaluate[string](fragTimesJS))
			t.Logf("page %d (plain %v): fragment times %s %v", i, v.plain, ft, err)
		}
		busy, err := taskSeconds(v.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v.plain {
			res.PlainMainThreadS = append(res.PlainMainThreadS, busy)
			res.PlainBytes += f.NetBytes
			res.PlainRebuffers += s.QA.Stalls
			res.PlainStartupsMs = append(res.PlainStartupsMs, f.StartMs)
			res.PlainBandwidthMbps = append(res.PlainBandwidthMbps, f.BW/1e6)
			continue
		}
		res.P2PBytes += s.Stats.P2PBytes
		res.CDNBytes += s.Stats.CDNBytes
		res.PagesNetBytes += f.NetBytes
		res.Rebuffers += s.QA.Stalls
		res.StartupsMs = append(res.StartupsMs, f.StartMs)
		res.MainThreadS = append(res.MainThreadS, busy)
		res.BandwidthMbps = append(res.BandwidthMbps, f.BW/1e6)
		res.Levels = append(res.Levels, f.Level)
		if tot := s.Stats.P2PBytes + s.Stats.CDNBytes; tot > 0 {
			res.PerViewerOffload = append(res.PerViewerOffload, float64(s.Stats.P2PBytes)/float64(tot))
		}
	}
	_, segs := originStats(t, addr)
	segs -= warmSegs
	res.Origin = segs
	res.NotaryFetches = metric(t, addr, "peercdn_tracker_notary_fetches_total")
	res.NotaryDigests = metric(t, addr, "peercdn_tracker_notary_digests_total")
	res.Args = env("FIELD_ARGS", "")
	res.Relays = metric(t, addr, "peercdn_tracker_relay_seconds_count")
	total := res.P2PBytes + res.CDNBytes
	res.Offload = float64(res.P2PBytes) / float64(total)
	res.CDNOffload = 1 - float64(segs-res.PlainBytes)/float64(total)
	res.StartupMs = median(res.StartupsMs)
	if len(res.PlainStartupsMs) > 0 {
		res.PlainStartupMs = median(res.PlainStartupsMs)
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	if out := os.Getenv("FIELD_OUT"); out != "" {
		f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(f, string(b))
		f.Close()
	}
	t.Logf("%s, %d viewers + %d plain, CDN %s kbps: offload %.3f (pages), %.3f (at the CDN); startup median %.0f ms, plain %.0f ms; rebuffers %d, plain %d; main thread median %.1f s, plain %.1f s",
		view, n, nPlain, kbps, res.Offload, res.CDNOffload, res.StartupMs, res.PlainStartupMs, res.Rebuffers, res.PlainRebuffers,
		median(res.MainThreadS), median(res.PlainMainThreadS))
}

// taskSeconds is how long a page's main thread has run tasks.
func taskSeconds(ctx context.Context) (float64, error) {
	r, err := chromedp.Call(ctx, performance.GetMetrics, cdp.Empty{})
	if err != nil {
		return 0, err
	}
	for _, m := range r.Metrics {
		if m.Name == "TaskDuration" {
			return m.Value, nil
		}
	}
	return 0, nil
}

func countFalse(bs []bool) int { return len(bs) - countTrue(bs) }

func countTrue(bs []bool) (n int) {
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// fragTimesJS sums up, for hls.js's current level, the stats of the
// fragments that made its bandwidth samples: time to first byte, body,
// and parsing after the load, medians in ms.
const fragTimesJS = `(() => {
  const lv = demoPlayer.levels[demoPlayer.currentLevel];
  const st = ((lv && lv.details && lv.details.fragments) || []).map(f => f.stats).filter(s => s && s.loaded > 0 && s.parsing.end > 0);
  const med = a => { a.sort((x, y) => x - y); return a.length ? Math.round(a[a.length >> 1] * 10) / 10 : 0; };
  return JSON.stringify({n: st.length, ttfb: med(st.map(s => s.loading.first - s.loading.start)),
    body: med(st.map(s => s.loading.end - s.loading.first)), parse: med(st.map(s => s.parsing.end - s.loading.end)),
    kb: med(st.map(s => s.loaded / 1024)), bw: med(st.map(s => (s.bwEstimate || 0) / 1e6))});
})()`

// fieldPage is the site's page: hls.js with its defaults but
// enableWorker false (the outside harness's), loading src; unless plain,
// peercdn through its script tag with every option at its default, but
// those the query names (numbers and true/false as such; trace=1 is the
// debug trace). window.demoPlayer and __loadSourceAt are what the harness
// reads.
func fieldPage(tracker string, q url.Values) string {
	opts := map[string]any{}
	for k, v := range q {
		switch k {
		case "src", "level", "plain":
			continue
		}
		if n, err := strconv.ParseFloat(v[0], 64); err == nil && k != "trace" {
			opts[k] = n
		} else if b, err := strconv.ParseBool(v[0]); err == nil {
			opts[k] = b
		} else {
			opts[k] = v[0]
		}
	}
	cfg, _ := json.Marshal(opts)
	src, _ := json.Marshal(q.Get("src"))
	level := -1
	if l, err := strconv.Atoi(q.Get("level")); err == nil {
		level = l
	}
	tag := `<script src="http://` + tracker + `/peercdn.js"></script>`
	if q.Get("plain") != "" {
		tag = ""
	}
	return `<!doctype html><html><head><meta charset="utf-8"><title>field</title>
<script>window.peercdnConfig = ` + string(cfg) + `;</script>
` + tag + `
<script src="http://` + tracker + `/vendor/hls.min.js"></script>
</head><body><video id="video" muted playsinline></video>
<script>
var video = document.getElementById('video');
var hls = new Hls({ enableWorker: false });
if (window.peercdn) peercdn.hlsjs(hls);
var level = ` + strconv.Itoa(level) + `;
if (level >= 0) hls.on(Hls.Events.MANIFEST_PARSED, function () { hls.currentLevel = level; });
window.__loadSourceAt = performance.now();
hls.loadSource(` + string(src) + `);
hls.attachMedia(video);
window.demoPlayer = hls;
video.play().catch(function () {});
</script></body></html>`
}
