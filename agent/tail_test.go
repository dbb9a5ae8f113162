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
