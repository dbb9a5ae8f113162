package agent

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peercdn/peercdn/hashfile"
	"github.com/peercdn/peercdn/tracker"
)

// TestReceiverPassesSegmentOnAsItArrives: viewer B is receiving a segment
// from a holder whose uplink carries 150 KB/s (300 KB: about two seconds);
// viewer C asks B for it meanwhile. B passes the bytes on as they arrive,
// and C has the segment within moments of B. Before, B answered absent
// (it did not hold the segment yet) and C could ask it only once B had it
// all: a hop cost a whole transfer.
func TestReceiverPassesSegmentOnAsItArrives(t *testing.T) {
	const bps = 150 << 10
	o, holder, vs := startHolder(t, bps, 2, 5)
	b, c := vs[0], vs[1]
	ctx := context.Background()
	if err := holder.up.WaitN(ctx, bps); err != nil { // the cap's burst spent
		t.Fatal(err)
	}
	r := req(o, 5, 30*time.Second)
	bDone := make(chan time.Time, 1)
	go func() {
		res, err := b.Load(ctx, r)
		if err != nil || res.Source != SourceP2P {
			t.Errorf("B: %v from %s", err, res.Source)
		}
		bDone <- time.Now()
	}()
	waitArriving(t, b, segKey{r.Swarm, r.Seq})
	fromB := c.swarmFor(&r.Swarm).peer(b.PeerID())
	asked := time.Now()
	data, _, _, err := fromB.fetch(ctx, r.Seq, 5*time.Second, time.Now().Add(20*time.Second), fetchPlan{})
	cAt := time.Now()
	bAt := <-bDone
	if err != nil || !bytes.Equal(data, segment(5)) {
		t.Fatalf("C asked B %v before B had the segment: %v (%d bytes)", bAt.Sub(asked), err, len(data))
	}
	t.Logf("C asked B %v before B had the segment whole, and had it %v after B", bAt.Sub(asked), cAt.Sub(bAt))
	if cAt.Sub(bAt) > 300*time.Millisecond {
		t.Fatalf("C had the segment %v after B: not passed on as it arrived", cAt.Sub(bAt))
	}
}

// TestPasserOfBadBytesIsNotBlamed: B passes on a segment arriving from a
// holder that corrupts its uploads. B finds the copy bad once whole, so C,
// which took B's bytes as they came, gets absent instead of the last chunk:
// C never completes a segment nobody checked, and does not count B as a
// failing peer for it.
func TestPasserOfBadBytesIsNotBlamed(t *testing.T) {
	const bps = 150 << 10
	o, tr := startOrigin(t), startTracker(t)
	holder := startAgent(t, tr, func(c *Config) {
		c.UploadBytesPerSecond = bps
		c.Adversary = &Adversary{CorruptUploads: true}
	})
	b, c := startAgent(t, tr, nil), startAgent(t, tr, nil)
	waitPeersWithin(t, 20*time.Second, 2, holder, b, c)
	ctx := context.Background()
	if _, err := holder.Load(ctx, req(o, 6, 0)); err != nil {
		t.Fatal(err)
	}
	waitHolds(t, b, req(o, 6, 0))
	if err := holder.up.WaitN(ctx, bps); err != nil {
		t.Fatal(err)
	}
	r := req(o, 6, 30*time.Second)
	go b.Load(ctx, r)
	waitArriving(t, b, segKey{r.Swarm, r.Seq})
	fromB := c.swarmFor(&r.Swarm).peer(b.PeerID())
	data, _, _, err := fromB.fetch(ctx, r.Seq, 5*time.Second, time.Now().Add(20*time.Second), fetchPlan{})
	if err == nil {
		t.Fatalf("C completed a segment B passed on unchecked (%d bytes, good: %v)", len(data), bytes.Equal(data, segment(6)))
	}
	if !errors.Is(err, errAbsent) {
		t.Fatalf("C's transfer from B ended with %v, want absent", err)
	}
	t.Logf("C got %d bytes from B, then absent", len(data))
	fromB.mu.Lock()
	failures := fromB.failures
	fromB.mu.Unlock()
	if failures != 0 || !fromB.connected() {
		t.Fatalf("C counts B as failing (%d failures, connected %v)", failures, fromB.connected())
	}
}

// waitArriving waits until a has received the first bytes of k from a peer.
func waitArriving(t *testing.T, a *Agent, k segKey) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if in := a.arriving(k); in != nil && in.from != nil && in.total() > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the segment did not start arriving from a peer")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPasserThatStalledIsAskedAgainOnceItHolds: a viewer asks a peer that
// is fetching the segment from a slow CDN (2 s to its first byte; the
// origin's hash manifest lets peers' copies be checked at once) and the
// request stalls, the CDN's wait and not the peer's. Once the peer holds
// the segment whole it is asked again: before, it was left out for the
// rest of the load, which waited for nobody until MaxWait and fetched its
// own copy from the CDN.
func TestPasserThatStalledIsAskedAgainOnceItHolds(t *testing.T) {
	var sent atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/seg/"+hashfile.Name {
			m := hashfile.Manifest{SHA256: map[string]string{"3": hashfile.Sum(segment(3))}}
			b, _ := m.Encode()
			w.Write(b)
			return
		}
		if r.URL.Path != "/seg/3" {
			http.NotFound(w, r)
			return
		}
		time.Sleep(2 * time.Second)
		sent.Add(1)
		w.Write(segment(3))
	}))
	t.Cleanup(origin.Close)
	tr := startTrackerWith(t, func(c *tracker.Config) { c.HashManifests = true })
	loader := startAgent(t, tr, nil)
	viewer := startAgent(t, tr, func(c *Config) { c.P2PStallTimeout = 300 * time.Millisecond })
	waitPeers(t, 1, loader, viewer)
	seg := Request{Swarm: testSwarm, Seq: sid(origin.URL, 3), URL: origin.URL + "/seg/3"}
	ctx := context.Background()
	fetched := make(chan error, 1)
	go func(seg Request) { _, err := loader.Load(ctx, seg); fetched <- err }(seg)
	// The viewer asks once it sees the loader fetching it.
	sw := viewer.swarmFor(&testSwarm)
	for deadline := time.Now().Add(5 * time.Second); sw.receiving(seg.Seq, nil) == nil; {
		if time.Now().After(deadline) {
			t.Fatal("the loader never said it was loading")
		}
		time.Sleep(5 * time.Millisecond)
	}
	seg.Deadline = time.Now().Add(8 * time.Second)
	r, err := viewer.Load(ctx, seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-fetched; err != nil {
		t.Fatal(err)
	}
	if r.Source != SourceP2P || !bytes.Equal(r.Data, segment(3)) || sent.Load() != 1 {
		t.Fatalf("the viewer's copy came from %s (%s) after %v, the CDN sent %d copies; want its peer's, and one", r.Source, r.Why, r.Duration.Round(time.Millisecond), sent.Load())
	}
}
