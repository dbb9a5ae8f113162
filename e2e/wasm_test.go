//go:build e2e

package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// wasmRunner is a page that runs a Go test binary compiled for js/wasm and
// records its output and exit code.
const wasmRunner = `<!doctype html><script src="/wasm_exec.js"></script><script>
window.__out = ""; window.__exit = null;
const dec = new TextDecoder();
const write = globalThis.fs.writeSync;
globalThis.fs.writeSync = function (fd, buf) { window.__out += dec.decode(buf); return buf.length; };
const go = new Go();
// Fuzz seed corpora live on disk, which the page cannot read: tests only.
go.argv = ["test.wasm", "-test.v", "-test.run=^Test"];
go.exit = function (code) { window.__exit = code; };
WebAssembly.instantiateStreaming(fetch("/test.wasm"), go.importObject)
  .then(r => go.run(r.instance))
  .catch(e => { window.__out += String(e); window.__exit = 99; });
</script>`

// TestWasmUnitTestsInChromium compiles the packages the browser runs (their
// pure tests) for GOOS=js and runs them in Chromium.
func TestWasmUnitTestsInChromium(t *testing.T) {
	alloc := newBrowser(t)
	for _, pkg := range []string{"./peerwire", "./signaling"} {
		t.Run(strings.TrimPrefix(pkg, "./"), func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "test.wasm")
			cmd := exec.Command("go", "test", "-c", "-o", bin, pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("compiling %s for wasm: %v\n%s", pkg, err, out)
			}
			mux := http.NewServeMux()
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(wasmRunner)) })
			mux.HandleFunc("/wasm_exec.js", func(w http.ResponseWriter, r *http.Request) {
				http.ServeFile(w, r, filepath.Join(runtime.GOROOT(), "lib", "wasm", "wasm_exec.js"))
			})
			mux.HandleFunc("/test.wasm", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/wasm")
				http.ServeFile(w, r, bin)
			})
			hs := httptest.NewServer(mux)
			defer hs.Close()
			ctx, cancel := chromedp.NewContext(alloc)
			defer cancel()
			if err := chromedp.Do(ctx, chromedp.Navigate(hs.URL)); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(2 * time.Minute)
			for {
				c, cancel := context.WithTimeout(ctx, 5*time.Second)
				code, err := chromedp.Run(c, chromedp.Evaluate[int]("window.__exit === null ? -1 : window.__exit"))
				cancel()
				if err == nil && code >= 0 {
					out, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("window.__out"))
					t.Logf("%s in Chromium:\n%s", pkg, out)
					if code != 0 || !strings.Contains(out, "PASS") {
						t.Fatalf("exit code %d", code)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatal("the wasm tests did not finish")
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}
