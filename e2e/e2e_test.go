//go:build e2e

// Package e2e plays the demo in real headless Chromium: the real binary
// serving the tracker, the demo origin and the wasm agent, real hls.js and
// Shaka, real WebRTC data channels between browser contexts on loopback.
// Run with `make e2e` (it builds the binary, the wasm and the vendored players).
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/peercdn/peercdn/internal/redistest"
)

var (
	root     = ".."
	binary   = filepath.Join(root, "bin", "peercdn")
	chromium = "/usr/bin/chromium"
)

func TestMain(m *testing.M) {
	if b := os.Getenv("E2E_BINARY"); b != "" {
		binary = b // another build, side by side (a before/after comparison)
	}
	for _, f := range []string{binary, filepath.Join(root, "web", "vendor", "hls.min.js"), chromium} {
		if _, err := os.Stat(f); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s missing: run `make e2e`\n", f)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// serve runs `peercdn serve` with args on a free loopback port.
func serve(t *testing.T, args ...string) (addr string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	cmd := exec.Command(binary, append([]string{"serve", "--listen", addr, "--vendor-dir", filepath.Join(root, "web", "vendor")}, args...)...)
	cmd.Stderr = &prefixWriter{t: t, prefix: "serve " + addr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return addr, stop
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve %v did not come up: %v", args, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type prefixWriter struct {
	t      *testing.T
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if testing.Verbose() && !strings.Contains(string(b), `"level":"INFO"`) {
		p.t.Logf("%s: %s", p.prefix, strings.TrimSpace(string(b)))
	}
	return len(b), nil
}

// newBrowser starts one headless Chromium for the test, with background
// tabs' timers running at full speed.
func newBrowser(t *testing.T) context.Context { return startBrowser(t, false) }

// startBrowser starts one headless Chromium; with throttle, hidden tabs are
// throttled as in a user's browser (timers woken about once a second).
func startBrowser(t *testing.T, throttle bool) context.Context {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.NoFirstRun,
		chromedp.Headless,
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	if !throttle {
		opts = append(opts,
			chromedp.Flag("disable-background-timer-throttling", true),
			chromedp.Flag("disable-renderer-backgrounding", true),
			chromedp.Flag("disable-backgrounding-occluded-windows", true))
	}
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	// Start the browser; viewers open their own browser contexts in it.
	ctx, cancel2 := chromedp.NewContext(alloc)
	t.Cleanup(cancel2)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("true")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// stallProbe counts, per page, every time the video waits for data after it
// first played.
const stallProbe = `
window.__qa = {playing: false, stalls: 0, stallMs: 0, waitingAt: 0, firstFrameMs: 0};
document.addEventListener('DOMContentLoaded', function () {
  if (window.peercdn) window.peercdn.ready.then(function () { window.__readyAt = performance.now(); });
});
document.addEventListener('playing', function () {
  var q = window.__qa;
  if (!q.firstFrameMs) q.firstFrameMs = performance.now();
  if (q.waitingAt) { q.stallMs += performance.now() - q.waitingAt; q.waitingAt = 0; }
  q.playing = true;
}, true);
document.addEventListener('waiting', function (e) {
  var q = window.__qa;
  if (e.target.seeking) return; // a seek (hls.js jumping to the live edge) is not a stall
  if (q.playing && !q.waitingAt) { q.stalls++; q.waitingAt = performance.now(); (q.stallAt = q.stallAt || []).push(Math.round(q.waitingAt)); }
}, true);
`

// viewer opens url in a fresh browser context (its own cookies, cache and
// WebRTC identity) with camera and microphone granted, so Chromium offers
// host candidates instead of mDNS names.
func viewer(t *testing.T, alloc context.Context, url string) context.Context {
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("true")); err != nil {
		t.Fatal(err)
	}
	bc := chromedp.FromContext(ctx).BrowserContextID
	for _, p := range []string{"camera", "microphone"} {
		if _, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: p}, Setting: browser.PermissionSettingGranted,
			BrowserContextID: bc,
		}); err != nil {
			t.Fatalf("grant %s: %v", p, err)
		}
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: stallProbe}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// sample is what a page reports.
type sample struct {
	Time  float64 `json:"t"`
	Stats struct {
		CDNBytes    int64  `json:"cdnBytes"`
		P2PBytes    int64  `json:"p2pBytes"`
		UploadBytes int64  `json:"uploadBytes"`
		Peers       int    `json:"peers"`
		Control     bool   `json:"control"`
		Ready       bool   `json:"ready"`
		Error       string `json:"error"`
	} `json:"s"`
	QA struct {
		Playing      bool    `json:"playing"`
		Stalls       int     `json:"stalls"`
		StallMs      float64 `json:"stallMs"`
		FirstFrameMs float64 `json:"firstFrameMs"`
	} `json:"qa"`
}

func read(t *testing.T, ctx context.Context) sample {
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	js := `JSON.stringify({t: document.querySelector('video').currentTime, s: window.peercdn ? peercdn.stats() : {}, qa: window.__qa})`
	raw, err := chromedp.Run(c, chromedp.Evaluate[string](js))
	if err != nil {
		t.Fatalf("reading page: %v", err)
	}
	var s sample
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// play opens n viewers of url a second apart, lets them play for d, and
// returns their first and last samples. during, if set, runs at d/3.
var lastViews []context.Context

func play(t *testing.T, url string, n int, d time.Duration, during func()) (first, last []sample) {
	urls := make([]string, n)
	for i := range urls {
		urls[i] = url
	}
	return playPages(t, urls, d, during)
}

// playPages is play with a page each: viewers of different players.
func playPages(t *testing.T, urls []string, d time.Duration, during func()) (first, last []sample) {
	alloc := newBrowser(t)
	var views []context.Context
	defer func() { lastViews = views }()
	for i, url := range urls {
		views = append(views, viewer(t, alloc, url))
		if i < len(urls)-1 {
			time.Sleep(time.Second)
		}
	}
	time.Sleep(5 * time.Second) // everyone starts playing
	for _, v := range views {
		first = append(first, read(t, v))
	}
	step := d / 6
	for i := 1; i <= 6; i++ {
		time.Sleep(step)
		if i == 2 && during != nil {
			during()
		}
		var line []string
		for j, v := range views {
			s := read(t, v)
			line = append(line, fmt.Sprintf("v%d t=%.0f p2p=%d cdn=%d up=%d peers=%d stalls=%d %s", j, s.Time, s.Stats.P2PBytes, s.Stats.CDNBytes, s.Stats.UploadBytes, s.Stats.Peers, s.QA.Stalls, s.Stats.Error))
			if i == 6 {
				last = append(last, s)
			}
		}
		t.Logf("after %v:\n  %s", step*time.Duration(i), strings.Join(line, "\n  "))
	}
	return first, last
}

// swarmFigures sums a run: offload over all viewers, and how many got bytes
// from peers.
func swarmFigures(t *testing.T, last []sample) (offload float64, withP2P int) {
	var p2p, cdn int64
	for i := range last {
		if last[i].Stats.P2PBytes > 0 {
			withP2P++
		}
		p2p += last[i].Stats.P2PBytes
		cdn += last[i].Stats.CDNBytes
	}
	offload = float64(p2p) / float64(p2p+cdn)
	t.Logf("swarm offload %.3f (p2p %d, cdn %d), %d of %d viewers got bytes from peers", offload, p2p, cdn, withP2P, len(last))
	return offload, withP2P
}

// checkAdvance asserts every video played at least frac of the window.
func checkAdvance(t *testing.T, first, last []sample, window time.Duration, frac float64) {
	for i := range last {
		if adv := last[i].Time - first[i].Time; adv < frac*window.Seconds() {
			t.Errorf("viewer %d: video advanced %.1f s in a %v window", i, adv, window)
		}
	}
}

// swarmWant is what a swarm run must show: every video advanced at least
// three quarters of the window, no viewer stalled, at least minWithP2P
// viewers got bytes from peers and the swarm's offload is at least
// minOffload.
type swarmWant struct {
	minWithP2P int
	minOffload float64
}

// checkSwarm holds a run to want, and returns its figures.
func checkSwarm(t *testing.T, first, last []sample, window time.Duration, want swarmWant) (offload float64, withP2P int) {
	t.Helper()
	checkAdvance(t, first, last, window, 0.75)
	offload, withP2P = swarmFigures(t, last)
	if withP2P < want.minWithP2P {
		t.Errorf("%d of %d viewers got bytes from peers, want at least %d", withP2P, len(last), want.minWithP2P)
	}
	if offload < want.minOffload {
		t.Errorf("offload %.3f, want at least %.2f", offload, want.minOffload)
	}
	for i := range last {
		if last[i].QA.Stalls > 0 {
			t.Errorf("viewer %d stalled %d times (%.0f ms)", i, last[i].QA.Stalls, last[i].QA.StallMs)
			logTrace(t, i)
		}
	}
	return offload, withP2P
}

// logTrace logs how viewer i's segments came and when it stalled, in page
// time: a page opened with trace=1 keeps its loads (web/static/peercdn.js).
func logTrace(t *testing.T, i int) {
	t.Helper()
	if i >= len(lastViews) {
		return
	}
	c, cancel := context.WithTimeout(lastViews[i], 10*time.Second)
	defer cancel()
	tr, err := chromedp.Run(c, chromedp.Evaluate[string](`JSON.stringify({firstFrame: Math.round(window.__qa.firstFrameMs), stallAt: window.__qa.stallAt || [], loads: window.__peercdnTrace || []})`))
	if err != nil {
		t.Logf("viewer %d trace: %v", i, err)
		return
	}
	t.Logf("viewer %d trace: %s", i, tr)
}

func stalls(last []sample) (n int, ms float64) {
	for _, s := range last {
		n += s.QA.Stalls
		ms += s.QA.StallMs
	}
	return
}

// TestHlsjsLiveSwarm: 4 viewers in their own browser contexts play the live
// demo through hls.js for 60 s: every video advances, at least 3 viewers get
// bytes from peers, the swarm's offload is at least 0.5, and no viewer
// stalls.
//
// E2E_QUERY adds a query to the page URL for diagnosis, e.g. "?verify=1"
// (compare every segment the agent returns with the CDN's) or
// "?maxWaitMs=1" (do not wait for peers).
//
// hls.js's ABR is on, as on sites: all 4 viewers keep to one rendition, the
// one the CDN sustains. (They did not always: hls.js took the agent's waits
// for a peer for a slow network, and once left a viewer alone in a lower
// rendition, a swarm of one, at 0.477 offload; see checkABREstimates.)
func TestHlsjsLiveSwarm(t *testing.T) {
	addr, _ := serve(t, abrCDN...)
	query := os.Getenv("E2E_QUERY")
	first, last := play(t, "http://"+addr+"/"+query, 4, 60*time.Second, nil)
	checkSwarm(t, first, last, 60*time.Second, swarmWant{minWithP2P: 3, minOffload: 0.5})
	checkReports(t, addr, last)
	checkABREstimates(t, lastViews, `JSON.stringify({bw: demoPlayer.bandwidthEstimate, ttfb: demoPlayer.ttfbEstimate})`)
	for i, v := range lastViews {
		level, _ := chromedp.Run(v, chromedp.Evaluate[int](`demoPlayer.currentLevel`))
		t.Logf("viewer %d plays rendition %d", i, level)
	}
	checkStallReported(t, addr, lastViews[0])
	if os.Getenv("E2E_QUERY") != "" {
		for i, v := range lastViews {
			s, _ := chromedp.Run(v, chromedp.Evaluate[string]("JSON.stringify(window.__verify||null)"))
			t.Logf("viewer %d verify: %s", i, s)
		}
	}
}

// TestHlsjsSwarmOnThePage: with {worker: false} the agent runs on the
// page's main thread, as where a Web Worker cannot be made (the other
// browser tests run it in a worker, the default): 3 viewers play the live
// demo through hls.js, share segments that are byte for byte the CDN's,
// and report to the tracker.
func TestHlsjsSwarmOnThePage(t *testing.T) {
	addr, _ := serve(t, abrCDN...)
	first, last := play(t, "http://"+addr+"/?worker=0&verify=1&trace=1", 3, 40*time.Second, nil)
	checkSwarm(t, first, last, 40*time.Second, swarmWant{minWithP2P: 2, minOffload: 0.4})
	checkReports(t, addr, last)
	for i, v := range lastViews {
		got, err := chromedp.Run(v, chromedp.Evaluate[string](`JSON.stringify({verify: window.__verify || null, mainGo: typeof Go !== 'undefined'})`))
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Verify *struct {
				OK  int   `json:"ok"`
				Bad []any `json:"bad"`
			} `json:"verify"`
			MainGo bool `json:"mainGo"`
		}
		if err := json.Unmarshal([]byte(got), &r); err != nil {
			t.Fatal(err)
		}
		if r.Verify == nil || r.Verify.OK == 0 || len(r.Verify.Bad) > 0 {
			t.Errorf("viewer %d: %s, want every segment the agent returned to be the CDN's", i, got)
		}
		if !r.MainGo {
			t.Errorf("viewer %d: the Go runtime is not on its page, with worker: false", i)
		}
	}
}

// usage is what the tracker's viewers reported (/stats.json).
type usage struct {
	CDN     int64 `json:"cdn_bytes"`
	P2P     int64 `json:"p2p_bytes"`
	Up      int64 `json:"upload_bytes"`
	StallMs int64 `json:"stall_ms"`
	// Peer connections opened, and negotiated ones that never connected.
	PeersConnected int64 `json:"peers_connected"`
	PeersFailed    int64 `json:"peers_failed"`
}

func reportedUsage(t *testing.T, addr string) usage {
	t.Helper()
	var st struct {
		Usage usage `json:"usage"`
	}
	getJSON(t, "http://"+addr+"/stats.json", &st)
	return st.Usage
}

// getJSON decodes the JSON at url into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	r, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// checkReports compares what the viewers' agents reported to the tracker
// (with their pings, every 20 s) with what the pages counted, and reads the
// offload the tracker's dashboard shows in Chromium.
func checkReports(t *testing.T, addr string, last []sample) {
	t.Helper()
	var pages struct{ cdn, p2p, up int64 }
	var stallMs float64
	for _, s := range last {
		pages.cdn += s.Stats.CDNBytes
		pages.p2p += s.Stats.P2PBytes
		pages.up += s.Stats.UploadBytes
		stallMs += s.QA.StallMs
	}
	u := reportedUsage(t, addr)
	t.Logf("reported to the tracker: cdn %d p2p %d up %d stall %d ms, peer connections %d opened and %d failed; pages counted cdn %d p2p %d up %d stall %.0f ms",
		u.CDN, u.P2P, u.Up, u.StallMs, u.PeersConnected, u.PeersFailed, pages.cdn, pages.p2p, pages.up, stallMs)
	// 4 viewers in a full mesh: 6 connections, counted at both ends.
	if u.PeersConnected < 6 || u.PeersFailed > u.PeersConnected/4 {
		t.Errorf("peer connections reported: %d opened, %d failed", u.PeersConnected, u.PeersFailed)
	}
	// Reports trail the pages by up to one heartbeat (20 s of 60).
	if u.P2P <= pages.p2p/3 || u.P2P > pages.p2p || u.CDN <= 0 || u.CDN > pages.cdn || u.Up > pages.up ||
		float64(u.StallMs) > stallMs+1 {
		t.Errorf("the tracker's figures do not match what the pages counted")
	}
	dash, cancel := chromedp.NewContext(lastViews[0])
	defer cancel()
	if _, err := chromedp.Run(dash, chromedp.Navigate("http://"+addr+"/dashboard")); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	shown, err := chromedp.Run(dash, chromedp.Poll[string](`document.getElementById('offloadAll').textContent.endsWith('%') && document.getElementById('offloadAll').textContent`,
		chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	want := fmt.Sprintf("%.1f%%", 100*float64(u.P2P)/float64(u.P2P+u.CDN))
	t.Logf("dashboard shows offload %s since the start (stats.json a moment before: %s)", shown, want)
	if !strings.HasSuffix(shown, "%") || shown == "0.0%" {
		t.Errorf("dashboard offload %q", shown)
	}
}

// checkStallReported makes viewer's video element signal a 600 ms stall
// (the media events a real one fires: none happened in these runs), stops
// its agent, and expects the stall in the tracker's figures: from the page's
// stall watcher, through the agent's last report.
func checkStallReported(t *testing.T, addr string, view context.Context) {
	t.Helper()
	stallMs := func() int64 { return reportedUsage(t, addr).StallMs }
	before := stallMs()
	js := `(async () => {
  const v = document.querySelector('video');
  v.dispatchEvent(new Event('waiting'));
  await new Promise(r => setTimeout(r, 600));
  v.dispatchEvent(new Event('playing'));
  await peercdn.destroy();
  return true;
})()`
	if _, err := chromedp.Run(view, chromedp.Evaluate[bool](js, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("stall: %v", err)
	}
	var got int64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = stallMs() - before; got >= 600 {
			break
		}
	}
	t.Logf("a 600 ms stall in viewer 0: the tracker's stall time grew by %d ms", got)
	if got < 600 || got > 2000 {
		t.Errorf("stall reported as %d ms, want about 600", got)
	}
}

// TestHlsjsBaseline plays the same page without peercdn: what the machine
// manages with plain hls.js, to compare against.
func TestHlsjsBaseline(t *testing.T) {
	addr, _ := serve(t, "--demo")
	first, last := play(t, "http://"+addr+"/?peercdn=off", 4, 60*time.Second, nil)
	checkAdvance(t, first, last, 60*time.Second, 0.75)
	n, ms := stalls(last)
	t.Logf("plain hls.js stalls: %d, %.0f ms in all", n, ms)
}

// TestShakaLiveSwarm: the same with Shaka Player: every video advances, at
// least 3 of 4 viewers get bytes from peers, offload >= 0.5, no stall.
func TestShakaLiveSwarm(t *testing.T) {
	addr, _ := serve(t, abrCDN...)
	first, last := play(t, "http://"+addr+"/shaka.html", 4, 60*time.Second, nil)
	checkSwarm(t, first, last, 60*time.Second, swarmWant{minWithP2P: 3, minOffload: 0.5})
	checkReports(t, addr, last)
	checkABREstimates(t, lastViews, `JSON.stringify({bw: demoPlayer.getStats().estimatedBandwidth})`)
}

// checkABREstimates reads each player's bandwidth estimate (bits/s) and,
// for hls.js, its time-to-first-byte estimate (ms), with js: every viewer's
// must be the CDN's, as the agent tells the players (agent.Result.ABR).
// The tests that call it pace the demo CDN (abrCDN): a loopback CDN's
// bodies take a few ms, so a busy page's timings alone spread the estimates
// of an unpaced one over 2-6.4x (dash.js: 6.9 against 44 Mbit/s once in
// CI), too near the bug this guards. Before, hls.js counted the wait for a
// peer as time to first byte and the rest against bandwidth: a viewer that
// often waited saw 1.4 Mbit/s and 489-700 ms where the others saw 40
// Mbit/s and 5 ms, and would have been held at a low rendition by peercdn.
// So an estimate under a third of the CDN's pace, or a first byte later
// than 250 ms (the CDN answers in abrCDNLatency), fails.
// abrCDN paces the demo CDN for the tests that check the players' ABR
// estimates: abrCDNKbps per response, some 100 ms for a 400 kbit/s
// rendition's 2 s segment, far above the demo's renditions.
const abrCDNKbps = 8000

var abrCDN = []string{"--demo", "--demo-cdn-kbps", fmt.Sprint(abrCDNKbps), "--demo-cdn-latency", "10ms"}

func checkABREstimates(t *testing.T, views []context.Context, js string) {
	t.Helper()
	type est struct {
		BW   float64  `json:"bw"`
		TTFB *float64 `json:"ttfb"`
	}
	var all []est
	for i, v := range views {
		raw, err := chromedp.Run(v, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("viewer %d: reading the player's estimates: %v", i, err)
		}
		var e est
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	for i, e := range all {
		line := fmt.Sprintf("viewer %d: bandwidth estimate %.1f Mbit/s", i, e.BW/1e6)
		if e.TTFB != nil {
			line += fmt.Sprintf(", time to first byte %.0f ms", *e.TTFB)
		}
		t.Log(line)
		if pace := abrCDNKbps * 1000.0; e.BW < pace/3 {
			t.Errorf("viewer %d: bandwidth estimate %.1f Mbit/s, under a third of the CDN's %.1f", i, e.BW/1e6, pace/1e6)
		}
		if e.TTFB != nil && *e.TTFB > 250 {
			t.Errorf("viewer %d: time to first byte estimate %.0f ms: the CDN answers in a few ms here", i, *e.TTFB)
		}
	}
}

// TestNativeAndBrowserViewers: native viewers (`peercdn swarm`, as load
// tests run them) and a browser viewer of the same page meet in one swarm
// and trade segments: the browser gets bytes from the native viewers and is
// connected to both. They name swarms and segments the same way (by URL
// path); before they did, each kind only ever met its own.
func TestNativeAndBrowserViewers(t *testing.T) {
	addr, _ := serve(t, "--demo")
	cmd := exec.Command(binary, "swarm", "--tracker", "ws://"+addr+"/ws", "--origin", "http://"+addr,
		"--viewers", "2", "--join-spread", "1s", "--seconds", "50", "--json")
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &prefixWriter{t: t, prefix: "swarm"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(8 * time.Second) // the native viewers are playing and hold segments
	first, last := play(t, "http://"+addr+"/?level=0", 1, 30*time.Second, nil)
	checkAdvance(t, first, last, 30*time.Second, 0.75)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("peercdn swarm: %v", err)
	}
	var sum struct {
		P2PBytes    int64 `json:"p2pBytes"`
		UploadBytes int64 `json:"uploadBytes"`
		Stalls      int   `json:"stalls"`
	}
	if err := json.Unmarshal([]byte(out.String()), &sum); err != nil {
		t.Fatalf("peercdn swarm printed %q: %v", out.String(), err)
	}
	b := last[0].Stats
	t.Logf("browser: p2p %d, cdn %d, up %d, peers %d; native viewers: p2p %d, up %d, stalls %d",
		b.P2PBytes, b.CDNBytes, b.UploadBytes, b.Peers, sum.P2PBytes, sum.UploadBytes, sum.Stalls)
	if b.P2PBytes == 0 {
		t.Error("the browser got no bytes from the native viewers")
	}
	if b.Peers < 2 {
		t.Errorf("the browser is connected to %d peers, want both native viewers", b.Peers)
	}
	if last[0].QA.Stalls > 0 {
		t.Errorf("the browser stalled %d times", last[0].QA.Stalls)
	}
}

// TestTrackerStopped: the tracker dies mid-play; every viewer keeps playing
// (from peers already connected, and the CDN) without a stall.
func TestTrackerStopped(t *testing.T) {
	origin, _ := serve(t, "--demo")
	tracker, stopTracker := serve(t, "--notary-private") // the demo origin is on 127.0.0.1
	url := "http://" + origin + "/shaka.html?tracker=ws://" + tracker + "/ws"
	first, last := play(t, url, 3, 48*time.Second, func() {
		t.Log("stopping the tracker")
		stopTracker()
	})
	for i := range last {
		if adv := last[i].Time - first[i].Time; adv < 40 {
			t.Errorf("viewer %d: video advanced only %.1f s", i, adv)
		}
		if last[i].QA.Stalls > 0 {
			t.Errorf("viewer %d stalled %d times after the tracker stopped", i, last[i].QA.Stalls)
		}
	}
}

// TestScreenshot writes the README's picture of the demo when E2E_SCREENSHOT
// names a file: two viewers play for 30 s, then the first page is captured.
func TestScreenshot(t *testing.T) {
	out := os.Getenv("E2E_SCREENSHOT")
	if out == "" {
		t.Skip("set E2E_SCREENSHOT=docs/demo.png to refresh the README's screenshot")
	}
	addr, _ := serve(t, "--demo")
	alloc := newBrowser(t)
	v := viewer(t, alloc, "http://"+addr+"/")
	viewer(t, alloc, "http://"+addr+"/")
	viewer(t, alloc, "http://"+addr+"/")
	time.Sleep(30 * time.Second)
	if _, err := chromedp.Call(v, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 1280, Height: 720, DeviceScaleFactor: 1}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	png, err := chromedp.Run(v, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTimeToFirstFrame measures the time from navigation to the first
// 'playing' event with and without peercdn on the same page, alternating,
// 5 loads each in fresh browser contexts. It logs the medians and their
// ratio (recorded in docs/benchmarks.md); it asserts only that both play.
func TestTimeToFirstFrame(t *testing.T) {
	addr, _ := serve(t, "--demo")
	pages := []struct{ name, path string }{
		{"hls.js", "/?"},
		{"Shaka DASH", "/shaka.html?src=/demo/dash/live/manifest.mpd&"},
		{"dash.js", "/dashjs.html?"},
	}
	for _, p := range pages {
		t.Run(p.name, func(t *testing.T) {
			alloc := newBrowser(t)
			var with, without []float64
			for i := range 10 {
				url := "http://" + addr + p.path
				if i%2 == 0 {
					url += "peercdn=off"
				}
				v := viewer(t, alloc, url)
				var s sample
				for range 100 {
					time.Sleep(100 * time.Millisecond)
					if s = read(t, v); s.QA.FirstFrameMs > 0 {
						break
					}
				}
				if s.QA.FirstFrameMs == 0 {
					t.Fatalf("%s: no frame within 10 s", url)
				}
				if i%2 == 0 {
					without = append(without, s.QA.FirstFrameMs)
				} else {
					with = append(with, s.QA.FirstFrameMs)
				}
				chromedp.Cancel(v)
			}
			mw, mo := median(with), median(without)
			t.Logf("%s time to first frame: with peercdn %.0f ms (runs %v), without %.0f ms (runs %v), ratio %.3f", p.name, mw, with, mo, without, mw/mo)
		})
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestConsent: with {consent: true} the page connects to nothing (no
// tracker connection, no agent) and plays from the CDN until
// peercdn.consent(true); then the agent starts.
func TestConsent(t *testing.T) {
	addr, _ := serve(t, "--demo")
	alloc := newBrowser(t)
	v := viewer(t, alloc, "http://"+addr+"/?consent=1")
	time.Sleep(8 * time.Second)
	s := read(t, v)
	if s.Stats.Ready || s.Time < 1 || s.Stats.CDNBytes == 0 {
		t.Fatalf("before consent: ready %v, video at %.1f s, CDN bytes %d", s.Stats.Ready, s.Time, s.Stats.CDNBytes)
	}
	if n := trackerConnections(t, addr); n != 0 {
		t.Fatalf("%v tracker connections before consent", n)
	}
	if _, err := chromedp.Run(v, chromedp.Evaluate[bool]("peercdn.consent(true).then(() => true)", chromedp.EvalAwaitPromise)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !read(t, v).Stats.Ready {
		if time.Now().After(deadline) {
			t.Fatal("agent not ready 15 s after consent")
		}
		time.Sleep(200 * time.Millisecond)
	}
	for trackerConnections(t, addr) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("no tracker connection after consent")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func trackerConnections(t *testing.T, addr string) float64 {
	return metric(t, addr, "peercdn_tracker_connections")
}

// metric reads an unlabelled series from the tracker's /metrics.
func metric(t *testing.T, addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// hide puts a foreground tab in front of a viewer's page (in its browser
// context): the page becomes hidden, as when a viewer switches tabs.
func hide(t *testing.T, view context.Context) {
	bc := chromedp.FromContext(view).BrowserContextID
	no := false
	if _, err := chromedp.CallBrowser(view, target.CreateTarget, target.CreateTargetParams{URL: "about:blank", NewWindow: &no, BrowserContextID: bc}); err != nil {
		t.Fatalf("opening a tab in front: %v", err)
	}
}

const timerProbe = `(async () => { const t0 = performance.now(); for (let i = 0; i < 10; i++) await new Promise(r => setTimeout(r, 10)); return document.visibilityState + ' ' + (performance.now() - t0).toFixed(0) })()`

// TestHiddenTab: one of 3 viewers switches to another tab for 40 s in a
// browser that throttles hidden tabs as users' browsers do (its timers wake
// about once a second: the Go agent's clock with them). The others play on
// without a stall and the hidden viewer's agent keeps serving them; back in
// front, it plays on without a stall. (Chrome pauses a muted video while
// hidden, so the hidden viewer itself cannot stall meanwhile.)
func TestHiddenTab(t *testing.T) {
	addr, _ := serve(t, "--demo")
	alloc := startBrowser(t, true)
	var views []context.Context
	for range 3 {
		views = append(views, viewer(t, alloc, "http://"+addr+"/?level=0"))
		time.Sleep(time.Second)
	}
	time.Sleep(12 * time.Second)
	var before []sample
	for _, v := range views {
		before = append(before, read(t, v))
	}
	hide(t, views[0])
	hiddenAt := time.Now()
	const hidden = 40 * time.Second
	time.Sleep(hidden / 2)
	probe, err := chromedp.Run(views[0], chromedp.Evaluate[string](timerProbe, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	var state string
	var ms float64
	fmt.Sscanf(probe, "%s %f", &state, &ms)
	if state != "hidden" || ms < 2000 {
		t.Fatalf("hidden viewer: %q (visibility, ms for 10 chained 10 ms timers): want hidden and throttled", probe)
	}
	time.Sleep(hidden / 2)
	var after []sample
	for _, v := range views {
		after = append(after, read(t, v))
	}
	elapsed := time.Since(hiddenAt) // the probe adds its ~10 s
	for i := range views {
		b, a := before[i], after[i]
		t.Logf("viewer %d over %v with viewer 0 hidden: video %.1f -> %.1f s, p2p +%d, cdn +%d, up +%d, stalls %d", i, elapsed.Round(time.Second),
			b.Time, a.Time, a.Stats.P2PBytes-b.Stats.P2PBytes, a.Stats.CDNBytes-b.Stats.CDNBytes, a.Stats.UploadBytes-b.Stats.UploadBytes, a.QA.Stalls)
		if i > 0 && (a.Time-b.Time < 0.75*elapsed.Seconds() || a.QA.Stalls > 0) {
			t.Errorf("viewer %d: advanced %.1f s, %d stalls, while viewer 0 was hidden", i, a.Time-b.Time, a.QA.Stalls)
		}
	}
	if up := after[0].Stats.UploadBytes - before[0].Stats.UploadBytes; up == 0 {
		t.Error("the hidden viewer served its peers nothing")
	}
	if _, err := chromedp.CallBrowser(views[0], target.ActivateTarget, target.ActivateTargetParams{TargetID: chromedp.FromContext(views[0]).Target.TargetID}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(18 * time.Second)
	back := read(t, views[0])
	t.Logf("viewer 0 back in front: video %.1f -> %.1f s in 18 s, stalls %d", after[0].Time, back.Time, back.QA.Stalls)
	if back.Time-after[0].Time < 12 || back.QA.Stalls > 0 {
		t.Errorf("viewer 0 back in front: advanced %.1f s in 18 s, %d stalls", back.Time-after[0].Time, back.QA.Stalls)
	}
}

// TestClusterDashboard: two nodes on one Redis; a viewer plays through node
// 2, and node 1's dashboard shows both nodes, with node 2's viewer's bytes.
func TestClusterDashboard(t *testing.T) {
	rs := redistest.Start(t)
	addr1, _ := serve(t, "--redis", rs.URL(), "--stats-interval", "500ms")
	addr2, _ := serve(t, "--redis", rs.URL(), "--stats-interval", "500ms", "--demo")
	nodeID := func(addr string) string {
		r, err := http.Get("http://" + addr + "/stats.json")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var st struct{ Node string }
		if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st.Node
	}
	node2 := nodeID(addr2)
	alloc := newBrowser(t)
	v := viewer(t, alloc, "http://"+addr2+"/")
	time.Sleep(8 * time.Second)
	// The agent's last report goes out when it stops.
	if _, err := chromedp.Run(v, chromedp.Evaluate[bool](`peercdn.destroy().then(() => true)`, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatal(err)
	}
	dash, cancel := chromedp.NewContext(alloc)
	defer cancel()
	if _, err := chromedp.Run(dash, chromedp.Navigate("http://"+addr1+"/dashboard")); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	js := fmt.Sprintf(`(() => {
		const row = document.querySelector('#nodes tr[data-node=%q]');
		const cdn = row && row.children[4].textContent;
		return document.querySelectorAll('#nodes tr').length === 2 && cdn && cdn !== '0 B' &&
			document.getElementById('node').textContent + ' | node 2 CDN ' + cdn;
	})()`, node2)
	shown, err := chromedp.Run(dash, chromedp.Poll[string](js, chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil {
		t.Fatalf("node 1's dashboard never showed both nodes with node 2's viewer's bytes: %v", err)
	}
	t.Logf("node 1's dashboard: %s", shown)
	if !strings.Contains(shown, "2 nodes") {
		t.Errorf("dashboard header %q", shown)
	}
}

// TestKillSwitchInTheBrowser: three hls.js viewers share segments; the
// operator turns P2P off with the admin API mid-playback. Every viewer
// drops its peers and goes on from the CDN without a stall, reporting as
// the control cohort, which the dashboard shows beside the P2P one.
func TestKillSwitchInTheBrowser(t *testing.T) {
	addr, _ := serve(t, "--demo", "--admin-token", "k")
	alloc := newBrowser(t)
	var views []context.Context
	for range 3 {
		views = append(views, viewer(t, alloc, "http://"+addr+"/"))
		time.Sleep(time.Second)
	}
	time.Sleep(20 * time.Second)
	var p2p int64
	for _, v := range views {
		p2p += read(t, v).Stats.P2PBytes
	}
	if p2p == 0 {
		t.Fatal("no viewer got bytes from a peer before the kill switch")
	}
	r, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/admin/rollout", strings.NewReader(`{"p2p_percent":0}`))
	r.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /admin/rollout: %s", resp.Status)
	}
	off := time.Now()
	before := make([]sample, len(views))
	for i, v := range views {
		for {
			before[i] = read(t, v)
			if before[i].Stats.Control && before[i].Stats.Peers == 0 {
				break
			}
			if time.Since(off) > 10*time.Second {
				t.Fatalf("viewer %d 10 s after the kill switch: control %v, %d peers", i, before[i].Stats.Control, before[i].Stats.Peers)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("every viewer off P2P %v after the PUT", time.Since(off).Round(time.Millisecond))
	const window = 20 * time.Second
	time.Sleep(window)
	for i, v := range views {
		s := read(t, v)
		t.Logf("viewer %d: video %.1f -> %.1f s, P2P %d -> %d bytes, CDN %d -> %d bytes, stalls %d -> %d",
			i, before[i].Time, s.Time, before[i].Stats.P2PBytes, s.Stats.P2PBytes, before[i].Stats.CDNBytes, s.Stats.CDNBytes, before[i].QA.Stalls, s.QA.Stalls)
		switch {
		case s.Time-before[i].Time < 0.75*window.Seconds():
			t.Errorf("viewer %d advanced %.1f s in %v with P2P off", i, s.Time-before[i].Time, window)
		case s.QA.Stalls > before[i].QA.Stalls:
			t.Errorf("viewer %d stalled after the kill switch", i)
		case s.Stats.P2PBytes != before[i].Stats.P2PBytes:
			t.Errorf("viewer %d got %d bytes from peers with P2P off", i, s.Stats.P2PBytes-before[i].Stats.P2PBytes)
		case s.Stats.CDNBytes <= before[i].Stats.CDNBytes:
			t.Errorf("viewer %d got nothing from the CDN in %v", i, window)
		}
	}
	dash, cancel := chromedp.NewContext(alloc)
	defer cancel()
	if _, err := chromedp.Run(dash, chromedp.Navigate("http://"+addr+"/dashboard")); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	js := `(() => {
		const row = document.querySelector('#cohorts tr[data-cohort=control]:not([data-origin])');
		// Offload 0: bytes got on P2P before the switch count for the p2p cohort.
		return !document.getElementById('cohortsTable').hidden && row && row.children[1].textContent === '3' &&
			['0.0%', '–'].includes(row.children[4].textContent) &&
			document.getElementById('rollout').textContent + ' on P2P | control: ' + [...row.children].map(td => td.textContent).join(' | ');
	})()`
	shown, err := chromedp.Run(dash, chromedp.Poll[string](js, chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		t.Fatalf("the dashboard never showed the 3 viewers in the control cohort: %v", err)
	}
	t.Logf("dashboard: %s", shown)
}
