package agent

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestLateTransferKeepsWhatThePeerCanSend: a holder whose uplink carries
// 100 KB/s has a 300 KB segment; its requester has about 2.2 s before it
// must turn to the CDN. The transfer is projected late at once, and the
// requester splits it: the holder goes on sending what it can in time, and
// the CDN sends only the rest. Before, the requester cancelled the transfer
// and took everything after its first chunks from the CDN (some 90% of the
// segment).
func TestLateTransferKeepsWhatThePeerCanSend(t *testing.T) {
	const bps = 100 << 10
	o, holder, vs := startHolder(t, bps, 1, 5)
	v := vs[0]
	ctx := context.Background()
	if err := holder.up.WaitN(ctx, bps); err != nil { // the cap's burst spent
		t.Fatal(err)
	}
	before := o.sent.Load()
	res, err := v.Load(ctx, req(o, 5, v.cdnEstimate()+v.cdnSafety()+2200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.Data, segment(5)) {
		t.Fatalf("got %d bytes, not the segment", len(res.Data))
	}
	cdn := o.sent.Load() - before
	t.Logf("source %s in %v; the CDN sent %d of %d bytes", res.Source, res.Duration.Round(time.Millisecond), cdn, segSize)
	if res.Source != SourceMixed {
		t.Fatalf("source %s, want %s", res.Source, SourceMixed)
	}
	if cdn > segSize/2 {
		t.Fatalf("the CDN sent %d of %d bytes: the peer's bytes after the lateness was seen were dropped", cdn, segSize)
	}
}

// TestSplitTransferWhosePeerLeaves: as above, but the holder leaves after
// the split: the requester fetches the gap between what arrived and the
// tail from the CDN, and plays the CDN's bytes joined to the holder's.
func TestSplitTransferWhosePeerLeaves(t *testing.T) {
	const bps = 100 << 10
	o, holder, vs := startHolder(t, bps, 1, 5)
	v := vs[0]
	ctx := context.Background()
	if err := holder.up.WaitN(ctx, bps); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(700 * time.Millisecond) // after the split (projected late from 200 ms on)
		holder.Leave(testSwarm)
	}()
	res, err := v.Load(ctx, req(o, 5, v.cdnEstimate()+v.cdnSafety()+2200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("source %s in %v", res.Source, res.Duration.Round(time.Millisecond))
	if !bytes.Equal(res.Data, segment(5)) {
		t.Fatalf("got %d bytes, not the segment", len(res.Data))
	}
	if res.Source != SourceMixed {
		t.Fatalf("source %s, want %s (the holder's bytes before it left, the CDN's after)", res.Source, SourceMixed)
	}
}

// TestStalledTransferResumesFromAnotherHolder: holder A stops sending after
// 100 KB of the segment (as a transfer waits for SCTP to resend a lost
// packet); meanwhile B gets the segment from the CDN. The viewer, finding
// its transfer stalled and late, asks B for the rest, from where A
// stopped, and the CDN sends it nothing. Before, the CDN sent the rest: a
// tail and the gap to it (200 KB).
func TestStalledTransferResumesFromAnotherHolder(t *testing.T) {
	s := stallThenHold(t, nil)
	before := s.o.sent.Load()
	got := <-s.done
	if got.err != nil {
		t.Fatal(got.err)
	}
	cdn := s.o.sent.Load() - before
	t.Logf("source %s in %v; the CDN sent %d bytes for it", got.res.Source, got.res.Duration.Round(time.Millisecond), cdn)
	if !bytes.Equal(got.res.Data, segment(5)) {
		t.Fatalf("got %d bytes, not the segment", len(got.res.Data))
	}
	if got.res.Source != SourceP2P || cdn != 0 {
		t.Fatalf("source %s with %d bytes from the CDN: the rest did not come from the other holder", got.res.Source, cdn)
	}
}

// TestResumeFromCorruptHolderBlamesIt: as above, but B corrupts its
// uploads. The whole (A's 100 KB, B's rest) fails its hash; the CDN's rest
// after A's bytes checks out, so B is the one dropped and banned, and the
// player gets the segment.
func TestResumeFromCorruptHolderBlamesIt(t *testing.T) {
	s := stallThenHold(t, func(c *Config) { c.Adversary = &Adversary{CorruptUploads: true} })
	got := <-s.done
	if got.err != nil {
		t.Fatal(got.err)
	}
	sw := s.v.swarmFor(&s.r.Swarm)
	t.Logf("source %s; corrupt segments seen %d; B banned %v, A banned %v", got.res.Source, s.v.Stats().Corrupt, sw.isBanned(s.b.PeerID()), sw.isBanned(s.a.PeerID()))
	if !bytes.Equal(got.res.Data, segment(5)) {
		t.Fatalf("got %d bytes, not the segment", len(got.res.Data))
	}
	if !sw.isBanned(s.b.PeerID()) || sw.isBanned(s.a.PeerID()) {
		t.Fatal("the corrupt holder was not the one banned")
	}
}

// stalled is a viewer's load from a holder that stalled, with another
// holder at hand.
type stalled struct {
	o       *testOrigin
	a, b, v *Agent
	r       Request
	done    chan loadResult // v's load, once it ends
}

type loadResult struct {
	res Result
	err error
}

// stallThenHold: holder A stops sending after 100 KB of segment 5; viewer v
// starts loading it from A (about 3 s before its reserve point), and once
// the bytes arrive, B (mutateB) gets the segment from the CDN.
func stallThenHold(t *testing.T, mutateB func(*Config)) stalled {
	t.Helper()
	o, tr := startOrigin(t), startTracker(t)
	s := stalled{o: o}
	s.a = startAgent(t, tr, func(c *Config) { c.uploadStallAfter = 100 << 10 })
	s.b = startAgent(t, tr, mutateB)
	s.v = startAgent(t, tr, nil)
	waitPeers(t, 2, s.a, s.b, s.v)
	ctx := context.Background()
	if _, err := s.a.Load(ctx, req(o, 5, 0)); err != nil {
		t.Fatal(err)
	}
	waitHolds(t, s.v, req(o, 5, 0))
	s.r = req(o, 5, s.v.cdnEstimate()+s.v.cdnSafety()+3*time.Second)
	s.done = make(chan loadResult, 1)
	go func() {
		res, err := s.v.Load(ctx, s.r)
		s.done <- loadResult{res, err}
	}()
	waitArriving(t, s.v, segKey{s.r.Swarm, s.r.Seq})
	if _, err := s.b.Load(ctx, req(o, 5, 0)); err != nil { // due at once: from the CDN
		t.Fatal(err)
	}
	return s
}

// isBanned reports whether id sent this agent a corrupt segment.
func (sw *swarm) isBanned(id string) bool {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.banned[id]
}

// TestSlowTransferSwitchesToAnotherHolder: holders A and B were measured by
// the viewer, A the faster; then A's uplink falls to 100 KB/s (an uplink
// below the bitrate, or shared by many requesters). The viewer's transfer
// from A is projected late while its bytes still flow, about 2.2 s before
// the load's reserve point: it asks B, measured at 1 MB/s, for the rest,
// and the CDN sends it nothing. Before, the transfer was split with the
// CDN, which sent the segment's second half, and B stayed idle.
func TestSlowTransferSwitchesToAnotherHolder(t *testing.T) {
	o, tr := startOrigin(t), startTracker(t)
	a, b, v := startAgent(t, tr, nil), startAgent(t, tr, nil), startAgent(t, tr, nil)
	waitPeers(t, 2, a, b, v)
	ctx := context.Background()
	// v measures A on segment 4, which only A holds, and B, capped at
	// 1 MB/s, on segment 3.
	measure := func(h *Agent, seq uint64) {
		t.Helper()
		if _, err := h.Load(ctx, req(o, seq, 0)); err != nil {
			t.Fatal(err)
		}
		waitHolds(t, v, req(o, seq, 0))
		if res, err := v.Load(ctx, req(o, seq, v.cdnEstimate()+v.cdnSafety()+3*time.Second)); err != nil || res.Source != SourceP2P {
			t.Fatalf("segment %d: %v from %v, want it from a peer", seq, err, res.Source)
		}
	}
	// capUplink caps h's upload at bps (0: none), its burst spent.
	capUplink := func(h *Agent, bps int) {
		t.Helper()
		if err := h.Configure(Live{UploadBytesPerSecond: &bps}); err != nil {
			t.Fatal(err)
		}
		if bps == 0 {
			return
		}
		if err := h.up.WaitN(ctx, bps); err != nil {
			t.Fatal(err)
		}
	}
	measure(a, 4)
	capUplink(b, 1<<20)
	measure(b, 3)
	capUplink(b, 0)
	sw := v.swarmFor(&testSwarm)
	t.Logf("v measured A at %.0f KB/s, B at %.0f KB/s", sw.peer(a.PeerID()).rate()/1024, sw.peer(b.PeerID()).rate()/1024)
	for _, h := range []*Agent{a, b} {
		if _, err := h.Load(ctx, req(o, 5, 0)); err != nil {
			t.Fatal(err)
		}
	}
	waitHolds(t, v, req(o, 5, 0))
	capUplink(a, 100<<10)
	before := o.sent.Load()
	res, err := v.Load(ctx, req(o, 5, v.cdnEstimate()+v.cdnSafety()+2200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	cdn := o.sent.Load() - before
	upB := b.Stats().UploadBytes - segSize // less segment 3
	t.Logf("source %s in %v; the CDN sent %d bytes for it; B sent %d", res.Source, res.Duration.Round(time.Millisecond), cdn, upB)
	if !bytes.Equal(res.Data, segment(5)) {
		t.Fatalf("got %d bytes, not the segment", len(res.Data))
	}
	if res.Source != SourceP2P || cdn != 0 || upB <= 0 {
		t.Fatalf("source %s with %d bytes from the CDN, %d from B: the rest did not come from the faster holder", res.Source, cdn, upB)
	}
}

// TestLateTransfersDoNotDropThePeer: a holder uploading at 100 KB/s is
// asked three times for a 300 KB segment with 600 ms to the reserve point
// and no split: each transfer is cut off late while its bytes flow. The
// requester's time ran out, not the peer: it stays connected, with its
// rate measured. Before, each counted as a failure, and the third dropped
// it (a starved simulator dropped and dialled peers again by the thousand).
func TestLateTransfersDoNotDropThePeer(t *testing.T) {
	const bps = 100 << 10
	o, holder, vs := startHolder(t, bps, 1, 5)
	v := vs[0]
	ctx := context.Background()
	r := v.swarmFor(&testSwarm).peer(holder.PeerID())
	if r == nil {
		t.Fatal("the holder is not a peer")
	}
	for i := range 3 {
		if err := holder.up.WaitN(ctx, bps); err != nil { // the cap's burst spent
			t.Fatal(err)
		}
		data, _, _, err := r.fetch(ctx, sid(o.URL, 5), v.cfg.P2PStallTimeout, time.Now().Add(600*time.Millisecond), fetchPlan{})
		t.Logf("transfer %d: %d bytes, %v", i, len(data), err)
		if err == nil || len(data) == 0 {
			t.Fatalf("transfer %d: %d bytes, %v: want cut off late with bytes", i, len(data), err)
		}
		r.failedBy(err)
	}
	r.mu.Lock()
	failures := r.failures
	r.mu.Unlock()
	if !r.connected() || failures != 0 {
		t.Fatalf("after three late transfers: connected %v, %d failures", r.connected(), failures)
	}
	if rt := r.rate(); rt <= 0 || rt > 2*bps {
		t.Fatalf("measured rate %.0f B/s, the holder sends %d", rt, bps)
	}
}
