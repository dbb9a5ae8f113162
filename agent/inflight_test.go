package agent

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
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
