package web

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
)

// TestAssetsRefuseOtherMethods: a POST to the loader is 405 with Allow,
// not the 404 of whatever serves "/" behind it.
func TestAssetsRefuseOtherMethods(t *testing.T) {
	mux := http.NewServeMux()
	New(slog.New(slog.NewTextHandler(io.Discard, nil)), "").Register(mux, false)
	mux.HandleFunc("/", http.NotFound)
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(method, "/peercdn.js", strings.NewReader("x")))
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /peercdn.js: %d, Allow %q", method, w.Code, w.Header().Get("Allow"))
		}
	}
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/peercdn.js", nil))
	if w.Code != http.StatusOK {
		t.Errorf("GET /peercdn.js: %d", w.Code)
	}
}

// The committed brotli form of the agent is what a binary built without
// `make wasm` (go install) serves: it must decode to the raw build when
// both are there.
func TestEmbeddedWasmFromBrotli(t *testing.T) {
	raw, br, err := embeddedWasm()
	if err != nil {
		t.Skip("no agent embedded")
	}
	if br == nil {
		t.Fatal("web/dist/peercdn.wasm.br missing: go install would build a binary without the agent")
	}
	dec, err := io.ReadAll(brotli.NewReader(bytes.NewReader(br)))
	if err != nil || !bytes.Equal(dec, raw) {
		t.Fatalf("peercdn.wasm.br decodes to %d bytes (%v), the raw agent is %d: run make wasm", len(dec), err, len(raw))
	}
	if name, size, ok := Agent(); !ok || size != len(raw) || name != wasmName(raw) {
		t.Fatalf("Agent() = %s %d %v", name, size, ok)
	}
}
