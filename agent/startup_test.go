package agent

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peercdn/peercdn/tracker"
)

// TestCDNSegmentIsNotHeldForTheManifest: a segment from the CDN goes to the
// player at once; looking up the origin's hash manifest, to check and share
// it, happens behind. Before, the first segment waited for the manifest's
// fetch: here 600 ms, on a real CDN a round trip.
func TestCDNSegmentIsNotHeldForTheManifest(t *testing.T) {
	const manifestDelay = 600 * time.Millisecond
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "peercdn-hashes.json") {
			time.Sleep(manifestDelay)
			http.NotFound(w, r)
			return
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(r.URL.Path, "/seg/"), 10, 64)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "seg", time.Time{}, bytes.NewReader(segment(n)))
	}))
	t.Cleanup(origin.Close)
	tr := startTrackerWith(t, func(c *tracker.Config) { c.HashManifests = true })
	a := startAgent(t, tr, nil)
	for a.tracker() == nil || !a.lookForManifests() {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	r, err := a.Load(context.Background(), Request{Swarm: testSwarm, Seq: sid(origin.URL, 3), URL: origin.URL + "/seg/3"})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if r.Source != SourceCDN || !bytes.Equal(r.Data, segment(3)) {
		t.Fatalf("source %s", r.Source)
	}
	if took >= manifestDelay {
		t.Fatalf("the segment took %v: it waited for the manifest (%v)", took, manifestDelay)
	}
	// It is shared once the lookup is over.
	deadline := time.Now().Add(5 * time.Second)
	for !a.cache.has(segKey{testSwarm, sid(origin.URL, 3)}) {
		if time.Now().After(deadline) {
			t.Fatal("the CDN copy was never kept")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
