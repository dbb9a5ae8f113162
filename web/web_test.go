package web

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
