// Package web serves what browsers load from the tracker: the peercdn.js
// loader, the agent as WebAssembly (content-hashed, precompressed with
// brotli and gzip) with Go's wasm_exec.js, and the demo pages.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/andybalholm/brotli"
)

// dist holds the build outputs of `make wasm`; static the hand-written files.
//
//go:embed dist static
var files embed.FS

// asset is one file, with its precompressed forms once ready.
type asset struct {
	name  string
	ctype string
	raw   []byte
	mu    sync.Mutex
	br    []byte
	gz    []byte
}

// Assets serves the browser files. Create with New.
type Assets struct {
	log     *slog.Logger
	wasm    *asset // nil when `make wasm` has not run
	wasmURL string // "peercdn.<hash>.wasm"
	exec    *asset
	loader  *asset
	static  fs.FS
	vendor  string // folder with hls.js and Shaka for the demo, or ""
}

// New loads the embedded files and starts compressing the large ones in the
// background. vendorDir, if it exists, is served at /vendor/ (the demo's
// player libraries, fetched by `make vendor`).
func New(log *slog.Logger, vendorDir string) *Assets {
	a := &Assets{log: log.With("component", "web")}
	a.static, _ = fs.Sub(files, "static")
	if b, br, err := embeddedWasm(); err == nil {
		a.wasmURL = wasmName(b)
		a.wasm = &asset{name: a.wasmURL, ctype: "application/wasm", raw: b, br: br}
		a.wasm.gz, _ = files.ReadFile("dist/peercdn.wasm.gz") // from `make wasm`
	} else {
		a.log.Warn("no agent wasm embedded: run `make wasm` before building; pages will play from the CDN only")
		a.wasmURL = "peercdn.missing.wasm"
	}
	if b, err := files.ReadFile("dist/wasm_exec.js"); err == nil {
		a.exec = &asset{name: "wasm_exec.js", ctype: "text/javascript; charset=utf-8", raw: b}
	}
	js, _ := fs.ReadFile(a.static, "peercdn.js")
	js = bytes.ReplaceAll(js, []byte("__PEERCDN_WASM__"), []byte(a.wasmURL))
	js = bytes.ReplaceAll(js, []byte("__PEERCDN_RELEASE__"), []byte(strings.TrimSuffix(a.wasmURL, ".wasm")))
	a.loader = &asset{name: "peercdn.js", ctype: "text/javascript; charset=utf-8", raw: js}
	if st, err := os.Stat(vendorDir); err == nil && st.IsDir() {
		a.vendor = vendorDir
	}
	for _, x := range []*asset{a.wasm, a.exec, a.loader} {
		if x != nil && (x.br == nil || x.gz == nil) {
			go x.compress(a.log) // small files, or a wasm built without `make wasm`
		}
	}
	return a
}

func (x *asset) compress(log *slog.Logger) {
	start := time.Now()
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write(x.raw)
	zw.Close()
	var br bytes.Buffer
	bw := brotli.NewWriterLevel(&br, brotli.BestCompression)
	bw.Write(x.raw)
	bw.Close()
	x.mu.Lock()
	x.gz, x.br = gz.Bytes(), br.Bytes()
	x.mu.Unlock()
	log.Debug("compressed", "file", x.name, "raw", len(x.raw), "gzip", gz.Len(), "brotli", br.Len(), "took", time.Since(start))
}

// serve writes the best encoding the client accepts.
func (x *asset) serve(w http.ResponseWriter, r *http.Request, cache string) {
	h := w.Header()
	h.Set("Content-Type", x.ctype)
	h.Set("Cache-Control", cache)
	h.Set("Vary", "Accept-Encoding")
	h.Set("Access-Control-Allow-Origin", "*") // instantiateStreaming on other origins' pages
	body := x.raw
	ae := r.Header.Get("Accept-Encoding")
	x.mu.Lock()
	switch {
	case x.br != nil && acceptsEncoding(ae, "br"):
		body = x.br
		h.Set("Content-Encoding", "br")
	case x.gz != nil && acceptsEncoding(ae, "gzip"):
		body = x.gz
		h.Set("Content-Encoding", "gzip")
	}
	x.mu.Unlock()
	h.Set("Content-Length", fmt.Sprint(len(body)))
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// acceptsEncoding reports whether an Accept-Encoding header allows enc
// (named, with a q-value above zero if one is given).
func acceptsEncoding(header, enc string) bool {
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), enc) {
			continue
		}
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			q, _ = strconv.ParseFloat(v, 64)
		}
		return q > 0
	}
	return false
}

// Register adds the loader routes to mux: /peercdn.js, the wasm and
// /wasm_exec.js. With demo, also the demo pages at /, /shaka.html, /dashjs.html and the
// vendored players at /vendor/.
func (a *Assets) Register(mux *http.ServeMux, demo bool) {
	mux.HandleFunc("GET /peercdn.js", func(w http.ResponseWriter, r *http.Request) {
		a.loader.serve(w, r, "public, max-age=300") // short: it names the current wasm
	})
	mux.HandleFunc("GET /"+a.wasmURL, func(w http.ResponseWriter, r *http.Request) {
		if a.wasm == nil {
			http.Error(w, "agent wasm not built: run `make wasm`", http.StatusNotFound)
			return
		}
		a.wasm.serve(w, r, "public, max-age=31536000, immutable")
	})
	// The same agent under a fixed name, for pages that load it from the
	// tracker without its script (the npm package's agentURL): revalidated
	// on each load, since the name does not change with the build.
	mux.HandleFunc("GET /peercdn.wasm", func(w http.ResponseWriter, r *http.Request) {
		if a.wasm == nil {
			http.Error(w, "agent wasm not built: run `make wasm`", http.StatusNotFound)
			return
		}
		etag := `"` + a.wasmURL + `"`
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		a.wasm.serve(w, r, "no-cache")
	})
	mux.HandleFunc("GET /wasm_exec.js", func(w http.ResponseWriter, r *http.Request) {
		if a.exec == nil {
			http.Error(w, "wasm_exec.js not built: run `make wasm`", http.StatusNotFound)
			return
		}
		a.exec.serve(w, r, "public, max-age=3600")
	})
	// Other methods on the assets: 405, not the tracker's 404 behind "/".
	for _, p := range []string{"/peercdn.js", "/" + a.wasmURL, "/peercdn.wasm", "/wasm_exec.js"} {
		mux.HandleFunc(p, methodNotAllowed)
	}
	if !demo {
		return
	}
	static := http.FileServerFS(a.static)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, a.static, "index.html")
	})
	for _, name := range []string{"/shaka.html", "/dashjs.html", "/demo.js", "/demo.css"} {
		mux.Handle("GET "+name, static)
	}
	mux.HandleFunc("GET /vendor/{file}", func(w http.ResponseWriter, r *http.Request) {
		if a.vendor == "" {
			http.Error(w, "player libraries not installed: run `make vendor`", http.StatusNotFound)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		http.ServeFile(w, r, filepath.Join(a.vendor, filepath.Base(r.PathValue("file"))))
	})
}

// methodNotAllowed answers a request for a read-only asset with a method
// other than GET or HEAD.
func methodNotAllowed(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed: GET or HEAD", http.StatusMethodNotAllowed)
}

// embeddedWasm returns the agent and its brotli form. A build from a
// checkout has the brotli form only (committed: `go install` builds a
// complete binary); `make wasm` adds the raw file.
func embeddedWasm() (raw, br []byte, err error) {
	br, _ = files.ReadFile("dist/peercdn.wasm.br")
	if raw, err = files.ReadFile("dist/peercdn.wasm"); err == nil {
		return raw, br, nil
	}
	if br == nil {
		return nil, nil, err
	}
	raw, err = io.ReadAll(brotli.NewReader(bytes.NewReader(br)))
	return raw, br, err
}

func wasmName(raw []byte) string {
	sum := sha256.Sum256(raw)
	return "peercdn." + hex.EncodeToString(sum[:6]) + ".wasm"
}

// Agent describes the embedded browser agent: its file name (which holds
// its content hash) and size, or ok false if the binary has none.
func Agent() (name string, size int, ok bool) {
	raw, _, err := embeddedWasm()
	if err != nil {
		return "", 0, false
	}
	return wasmName(raw), len(raw), true
}
