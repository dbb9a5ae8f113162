//go:build e2e

package e2e

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// bundledApp is a site's app as a bundler sees it: the npm package, hls.js
// and Shaka imported as modules, no globals read.
const bundledApp = `import Hls from 'hls.js';
import shakaLib from 'shaka-player';
import peercdn, { configure, hlsjs, shaka, on, type Events, type Stats } from 'peercdn';

const q = new URLSearchParams(location.search);
configure({ tracker: q.get('tracker') ?? undefined, uploadBytesPerSecond: 0, hiddenTab: 'normal' });
const seen: Partial<Record<keyof Events, number>> = {};
const kinds: (keyof Events)[] = ['ready', 'segment', 'tracker-connected', 'peer-connected', 'upload', 'error'];
for (const k of kinds) on(k, () => { seen[k] = (seen[k] ?? 0) + 1; });
on('segment', (e) => { if (e.source === 'p2p' && e.bytes <= 0) throw new Error('empty segment event'); });
(window as unknown as { __events: typeof seen }).__events = seen;
window.peercdn = peercdn; // the test reads stats() as on the demo pages

const video = document.querySelector('video')!;
const src = q.get('src')!;
if (q.get('player') === 'shaka') {
  shakaLib.polyfill.installAll();
  const player = shaka(new shakaLib.Player(), shakaLib);
  await player.attach(video);
  await player.load(src);
} else {
  const hls = hlsjs(new Hls({ enableWorker: false }));
  hls.loadSource(src);
  hls.attachMedia(video);
}
video.play().catch(() => {});
const s: Stats = peercdn.stats();
console.log('peercdn', peercdn.release, s.ready);
`

const bundledTSConfig = `{
  "compilerOptions": {
    "target": "es2022", "module": "es2022", "moduleResolution": "bundler",
    "strict": true, "noEmit": true, "skipLibCheck": false, "lib": ["es2022", "dom"],
    "types": []
  },
  "files": ["app.ts"]
}
`

// TestBundledApp builds a small app with a real bundler (esbuild) from the
// npm package (make npm), type-checks it against the package's
// declarations (tsc --noEmit), serves it from an origin other than the
// tracker's, and plays a swarm of 3 Chromium viewers through it: P2P
// bytes, no stalls, the events the app listens to.
func TestBundledApp(t *testing.T) {
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	pkg := abs(filepath.Join(root, "web", "npm", "dist"))
	nm := abs(filepath.Join(root, "web", "npm-vendor", "node_modules"))
	esbuild, tsc := filepath.Join(nm, ".bin", "esbuild"), filepath.Join(nm, ".bin", "tsc")
	for _, f := range []string{filepath.Join(pkg, "index.mjs"), esbuild, tsc} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s missing: run make e2e (npm, npm-tools)", f)
		}
	}
	dir := t.TempDir()
	mods := filepath.Join(dir, "node_modules")
	os.MkdirAll(mods, 0o755)
	for name, target := range map[string]string{"peercdn": pkg, "hls.js": filepath.Join(nm, "hls.js"), "shaka-player": filepath.Join(nm, "shaka-player")} {
		if err := os.Symlink(target, filepath.Join(mods, name)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "app.ts"), []byte(bundledApp), 0o644)
	os.WriteFile(filepath.Join(dir, "tsconfig.json"), []byte(bundledTSConfig), 0o644)
	run := func(name string, args ...string) {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
	}
	run(tsc, "-p", ".")
	www := filepath.Join(dir, "www")
	run(esbuild, "app.ts", "--bundle", "--format=esm", "--target=es2022", "--outfile="+filepath.Join(www, "app.js"))
	// The agent beside the bundle, as the package's README says.
	for _, f := range []string{"peercdn.wasm", "wasm_exec.js"} {
		b, err := os.ReadFile(filepath.Join(pkg, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(www, f), b, 0o644)
	}
	os.WriteFile(filepath.Join(www, "index.html"), []byte(`<!doctype html><meta charset="utf-8"><title>bundled</title>
<video muted autoplay playsinline width="320"></video><script type="module" src="app.js"></script>`), 0o644)
	site := httptest.NewServer(http.FileServer(http.Dir(www)))
	defer site.Close()

	addr, _ := serve(t, "--demo")
	url := site.URL + "/?tracker=ws://" + addr + "/ws&src=http://" + addr + "/demo/live/master.m3u8"
	first, last := play(t, url, 3, 40*time.Second, nil)
	offload, withP2P := checkSwarm(t, first, last, 40*time.Second, swarmWant{minWithP2P: 2})
	for i, s := range last {
		if s.Stats.Error != "" {
			t.Errorf("viewer %d: %s", i, s.Stats.Error)
		}
	}
	for i, v := range lastViews {
		ev, err := chromedp.Run(v, chromedp.Evaluate[map[string]int](`window.__events`))
		if err != nil {
			t.Fatal(err)
		}
		if ev["ready"] != 1 || ev["tracker-connected"] < 1 || ev["segment"] < 5 || ev["error"] != 0 {
			t.Errorf("viewer %d events %v", i, ev)
		}
		t.Logf("viewer %d events %v", i, ev)
	}
	// configure reaches the running agent: a refused value throws, and a
	// viewer told to stop uploading serves no more than what was under way.
	v := lastViews[0]
	refused, err := chromedp.Run(v, chromedp.Evaluate[string](`(() => { try { peercdn.configure({maxPeers: 0}); return ''; } catch (e) { return e.message; } })()`))
	if err != nil || !strings.Contains(refused, "MaxPeers") {
		t.Errorf("configure({maxPeers: 0}): %q %v, want refused", refused, err)
	}
	if _, err := chromedp.Run(v, chromedp.Evaluate[bool](`peercdn.configure({upload: false}), true`)); err != nil {
		t.Fatal(err)
	}
	before := read(t, v).Stats.UploadBytes
	time.Sleep(12 * time.Second)
	after := read(t, v).Stats.UploadBytes
	if after-before > 600<<10 { // a segment or two already under way
		t.Errorf("viewer 0 uploaded %d bytes in 12 s after configure({upload: false})", after-before)
	}
	t.Logf("bundled app: offload %.3f, %d of 3 viewers with P2P bytes; after upload off, %d bytes uploaded in 12 s", offload, withP2P, after-before)
}
