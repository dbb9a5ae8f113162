package sim

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/peercdn/peercdn/examples"
	"github.com/peercdn/peercdn/origin"
	"github.com/peercdn/peercdn/tracker"
)

// demo starts what `peercdn serve --demo` serves, in process: a tracker and
// the demo origin on one loopback server.
func demo(t *testing.T) (trackerURL, stream string) {
	st, err := fs.Sub(examples.Stream, "stream")
	if err != nil {
		t.Fatal(err)
	}
	o, err := origin.New(st)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := tracker.New(tracker.DefaultConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/demo/", http.StripPrefix("/demo", o))
	mux.Handle("/", srv.Handler())
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		srv.Drain(ctx)
		hs.Close()
	})
	return "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws", hs.URL + "/demo/live/master.m3u8"
}

// TestLiveSwarm: native viewers play the live demo through real pion peers;
// most bytes travel between them, nobody stalls, and the origin's own byte
// counter agrees with the viewers' CDN bytes.
func TestLiveSwarm(t *testing.T) {
	if testing.Short() {
		t.Skip("plays 20 s of live video")
	}
	tr, stream := demo(t)
	sum, err := RunSwarm(context.Background(), SwarmConfig{
		Trackers: []string{tr}, Stream: stream, Viewers: 6,
		Duration: 20 * time.Second, JoinSpread: 3 * time.Second, Loopback: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", sum)
	if sum.Stalls != 0 || sum.Errors != 0 {
		t.Errorf("%d stalls, %d errors", sum.Stalls, sum.Errors)
	}
	// 6 viewers: at best 5/6 of the bytes over P2P; start-up segments come
	// from the CDN, so over 20 s expect well above half.
	if sum.Offload < 0.6 {
		t.Errorf("offload %.2f, want >= 0.6", sum.Offload)
	}
	if diff := math.Abs(float64(sum.OriginSegmentBytes-sum.CDNBytes)) / float64(sum.CDNBytes); diff > 0.02 {
		t.Errorf("origin counted %d segment bytes, viewers %d: %.1f%% apart", sum.OriginSegmentBytes, sum.CDNBytes, 100*diff)
	}
}

// TestChurnDoesNotStall: viewers leave mid-transfer (one every 2 s); the
// peers they were serving complete from the CDN in time.
func TestChurnDoesNotStall(t *testing.T) {
	if testing.Short() {
		t.Skip("plays 20 s of live video")
	}
	tr, stream := demo(t)
	sum, err := RunSwarm(context.Background(), SwarmConfig{
		Trackers: []string{tr}, Stream: stream, Viewers: 6, Churn: 5,
		Duration: 20 * time.Second, JoinSpread: 2 * time.Second, Loopback: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", sum)
	if sum.ViewersEver < 12 {
		t.Errorf("only %d viewers ever: churn did not happen", sum.ViewersEver)
	}
	if sum.Stalls != 0 || sum.Errors != 0 {
		t.Errorf("%d stalls, %d errors", sum.Stalls, sum.Errors)
	}
}
