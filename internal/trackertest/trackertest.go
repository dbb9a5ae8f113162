// Package trackertest starts real tracker nodes for other packages' tests
// (agent, sim, loadgen) and reads their figures: /stats.json and a series
// of /metrics. The tracker's own tests, inside the package, have their
// own helpers.
package trackertest

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peercdn/peercdn/tracker"
)

// Node is a tracker on a loopback httptest server, drained and closed
// when the test ends.
type Node struct {
	Server *tracker.Server
	URL    string // http://127.0.0.1:port
}

// WS is the node's signaling URL.
func (n *Node) WS() string { return "ws" + strings.TrimPrefix(n.URL, "http") + "/ws" }

// Start starts a node with what a test on loopback needs (the notary may
// fetch from loopback origins), adjusted by mutate. mount, if set, adds
// handlers beside the tracker's, such as a demo origin at /demo/.
func Start(t testing.TB, mutate func(*tracker.Config), mount func(*http.ServeMux)) *Node {
	t.Helper()
	cfg := tracker.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.NotaryPrivate = true
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := tracker.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = srv.Handler()
	if mount != nil {
		mux := http.NewServeMux()
		mount(mux)
		mux.Handle("/", srv.Handler())
		h = mux
	}
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		srv.Drain(ctx)
		hs.Close()
		srv.Close()
	})
	return &Node{Server: srv, URL: hs.URL}
}

// HTTPBase is the http:// base of a tracker's ws:// signaling URL.
func HTTPBase(wsURL string) string {
	return "http" + strings.TrimSuffix(strings.TrimPrefix(wsURL, "ws"), "/ws")
}

// Stats reads base's /stats.json with query ("" or "?scope=cluster").
func Stats(t testing.TB, base, query string) tracker.Stats {
	t.Helper()
	r, err := http.Get(base + "/stats.json" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var st tracker.Stats
	if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// Metric reads one series of base's /metrics, named as exposed (with its
// labels, e.g. `peercdn_viewer_bytes_total{source="p2p"}`); 0 if absent.
func Metric(t testing.TB, base, series string) float64 {
	t.Helper()
	r, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	return 0
}
