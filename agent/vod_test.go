package agent

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestAdoptedSegmentIsShared: a segment the player fetched from the CDN on
// its own (before the agent started) is shared once adopted: the next
// viewer takes it from this one, and the CDN sends no third copy.
func TestAdoptedSegmentIsShared(t *testing.T) {
	o, tr := startOrigin(t), startTracker(t)
	first, next := startAgent(t, tr, nil), startAgent(t, tr, nil)
	waitPeers(t, 1, first, next)
	r := req(o, 3, 5*time.Second)
	resp, err := http.Get(r.URL) // the player's own load
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	first.Adopt(context.Background(), r, body)
	waitHolds(t, next, r) // its announcement and the notary's hash have reached the next viewer
	got, err := next.Load(context.Background(), req(o, 3, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != SourceP2P || !bytes.Equal(got.Data, segment(3)) {
		t.Fatalf("next viewer got segment 3 from %s", got.Source)
	}
	// The player's copy and the notary's.
	if sent := o.sent.Load(); sent != 2*segSize {
		t.Fatalf("origin sent %d bytes, want 2 copies (%d)", sent, 2*segSize)
	}
	if s := first.Stats(); s.CDNBytes != 0 || s.UploadBytes != segSize {
		t.Fatalf("adopting agent: %+v (the player's bytes are counted by the page, not here)", s)
	}
}

// TestLateViewerGetsOldHashes: a viewer joining a VOD swarm whose first
// segments were vouched for long ago (a join brings the last 32 hashes)
// asks the tracker, and takes them from peers rather than the CDN.
func TestLateViewerGetsOldHashes(t *testing.T) {
	o, tr := startOrigin(t), startTracker(t)
	// Two early viewers share the title's 33 segments (each viewer starts
	// at most 20 notary fetches at once).
	e1, e2 := startAgent(t, tr, nil), startAgent(t, tr, nil)
	waitPeers(t, 1, e1, e2)
	ctx := context.Background()
	for seq := uint64(0); seq <= 32; seq++ {
		a := e1
		if seq > 16 {
			a = e2
		}
		if _, err := a.Load(ctx, req(o, seq, 0)); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		vouched := 0
		for seq := uint64(0); seq <= 32; seq++ {
			if _, _, ok := e2.expected(segKey{testSwarm, sid(o.URL, seq)}, req(o, seq, 0).source()); ok {
				vouched++
			}
		}
		if vouched == 33 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tracker vouched for %d of 33 segments", vouched)
		}
		time.Sleep(20 * time.Millisecond)
	}
	late := startAgent(t, tr, nil)
	waitPeers(t, 2, late)
	for deadline := time.Now().Add(5 * time.Second); late.swarmFor(&testSwarm).best(sid(o.URL, 0), nil) == nil; {
		if time.Now().After(deadline) {
			t.Fatal("no peer announced segment 0")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, _, ok := late.expected(segKey{testSwarm, sid(o.URL, 0)}, req(o, 0, 0).source()); ok {
		t.Fatal("the join brought segment 0's hash: the query is not what is tested")
	}
	before := o.sent.Load()
	got, err := late.Load(ctx, req(o, 0, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != SourceP2P || o.sent.Load() != before {
		t.Fatalf("late viewer got segment 0 from %s; the CDN sent %d bytes more", got.Source, o.sent.Load()-before)
	}
}

// TestFarAheadWaitsForPeers: a segment due in 20 s, which another viewer
// was elected to fetch, is waited for past MaxWait (that viewer is behind,
// and gets there later); before, two VOD viewers racing through a title
// each fetched what the other was elected for.
func TestFarAheadWaitsForPeers(t *testing.T) {
	o, tr := startOrigin(t), startTracker(t)
	fast := func(c *Config) { c.MaxWait = 300 * time.Millisecond }
	ahead, behind := startAgent(t, tr, fast), startAgent(t, tr, fast)
	waitPeers(t, 1, ahead, behind)
	// A segment the viewer behind is elected for (election ranks the
	// segment's id, not its index at the origin).
	seq := electedSeq(o, 0, behind, ahead)
	ctx := context.Background()
	done := make(chan Result, 1)
	go func() {
		r, err := ahead.Load(ctx, req(o, seq, 20*time.Second))
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	time.Sleep(1500 * time.Millisecond) // five times MaxWait
	if _, err := behind.Load(ctx, req(o, seq, 0)); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.Source != SourceP2P {
		t.Fatalf("the viewer ahead got the segment from %s after %v", r.Source, r.Duration)
	}
}

// TestPeerThatStalledOnceIsAskedAgain: a load due far ahead, whose only
// holder stalled on its first request (a busy page), asks it again while
// it still waits; before, the holder was left out for the rest of the
// load, which waited until due and fetched its own copy from the CDN
// (64 s in a VOD field run).
func TestPeerThatStalledOnceIsAskedAgain(t *testing.T) {
	o, tr := startOrigin(t), startTracker(t)
	holder := startAgent(t, tr, func(c *Config) { c.uploadStallFirst = 1 })
	viewer := startAgent(t, tr, func(c *Config) { c.P2PStallTimeout = 300 * time.Millisecond })
	waitPeers(t, 1, holder, viewer)
	// A segment the viewer is elected for: with its holder left out, it
	// seeded its own copy from the CDN at once.
	seq := electedSeq(o, 0, viewer, holder)
	ctx := context.Background()
	if _, err := holder.Load(ctx, req(o, seq, 0)); err != nil {
		t.Fatal(err)
	}
	waitHolds(t, viewer, req(o, seq, 0))
	// Due in 12 s: the load waits for peers until it is due within
	// FarAhead (10 s), then MaxWait (2.5 s) more, before the CDN.
	got, err := viewer.Load(ctx, req(o, seq, 12*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != SourceP2P || !bytes.Equal(got.Data, segment(seq)) || o.sent.Load() != 2*segSize {
		t.Fatalf("the viewer got the segment from %s (%s) after %v, the origin sent %d bytes; want its peer's, and 2 copies (the holder's, the notary's)",
			got.Source, got.Why, got.Duration.Round(time.Millisecond), o.sent.Load())
	}
	if n := holder.stalledUploads.Load(); n < 2 {
		t.Fatalf("the holder was asked %d times, want the stalled request and another", n)
	}
}

// TestPlayerCDNLoadsSetABRFigures: the player's own CDN loads give the
// agent its CDN figures, which a segment from a peer reports to the
// player's ABR; before, with none, the peer's speed was reported.
func TestPlayerCDNLoadsSetABRFigures(t *testing.T) {
	a, err := New(DefaultConfig("ws://127.0.0.1:1/ws"))
	if err != nil {
		t.Fatal(err)
	}
	if total, _ := a.abrTiming(150_000, nil); total != 0 {
		t.Fatalf("figures before any CDN load: %v", total)
	}
	// 150 kB: 30 ms to the first byte, 1 s in all (1.2 Mbit/s).
	a.ObservePlayerCDN(150_000, 30*time.Millisecond, 1030*time.Millisecond)
	total, first := a.abrTiming(150_000, nil)
	if first != 30*time.Millisecond || total < 1020*time.Millisecond || total > 1040*time.Millisecond {
		t.Fatalf("a peer's 150 kB would be reported as %v (first byte %v), want about 1.03 s", total, first)
	}
}
