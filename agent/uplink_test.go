package agent

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// The admission rule alone: an idle link takes anything; a busy one with
// no rate measured takes one request waiting behind the others; once
// measured, those whose turn comes within uploadQueueWait.
func TestUplinkAdmits(t *testing.T) {
	var u uplink
	now := time.Unix(0, 0)
	var buffered, sent int64
	measure := func() (int64, int64) { return buffered, sent }
	const seg = 300 << 10
	if !u.admit(seg, now, measure) {
		t.Fatal("an idle link refused a request")
	}
	if !u.admit(seg, now, measure) {
		t.Fatal("no rate yet: a second request should wait behind the first")
	}
	if u.admit(seg, now, measure) {
		t.Fatal("no rate yet: a third request was taken on")
	}
	// 600 KB accepted; the link takes 300 KB a second of it.
	for range 8 {
		now = now.Add(uplinkSampleEvery)
		u.handed(75 << 10)
		sent += 75 << 10
		buffered = 0
		u.sample(now, measure)
	}
	if r := u.rate; r < 250<<10 || r > 350<<10 {
		t.Fatalf("rate %.0f B/s, want about 300 KB/s", r)
	}
	// Drained: idle again.
	if !u.admit(seg, now, measure) {
		t.Fatal("an idle link refused a request")
	}
	// 300 KB queued at 300 KB/s: one more segment starts within a second,
	// a third (600 KB ahead of it) not.
	if !u.admit(seg, now, measure) {
		t.Fatal("refused a request the link drains within the budget")
	}
	if u.admit(seg, now, measure) {
		t.Fatal("took on a request the link cannot drain within the budget")
	}
}

// TestBusyHolderSendsRequestersElsewhere: four viewers ask the one holder
// of a segment, whose uplink carries 150 KB/s, at the same time. It takes
// on what it can send in time and refuses the rest, who get the segment
// from the first viewers to have it. Before, the holder took on all four,
// each at a quarter of its uplink, and sent four copies.
func TestBusyHolderSendsRequestersElsewhere(t *testing.T) {
	o, holder, viewers := startHolder(t, 150<<10, 4, 9)
	ctx := context.Background()
	before := o.sent.Load()
	var wg sync.WaitGroup
	results := make([]Result, len(viewers))
	errs := make([]error, len(viewers))
	for i, v := range viewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = v.Load(ctx, req(o, 9, 15*time.Second))
		}()
	}
	wg.Wait()
	for i := range viewers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if results[i].Source != SourceP2P || !bytes.Equal(results[i].Data, segment(9)) {
			t.Errorf("viewer %d: %s after %v", i, results[i].Source, results[i].Duration)
		}
	}
	hs := holder.Stats()
	t.Logf("holder uploaded %d bytes (%d copies), refused %d requests; CDN sent %d bytes meanwhile",
		hs.UploadBytes, hs.UploadBytes/segSize, hs.UploadsRefused, o.sent.Load()-before)
	if hs.UploadsRefused == 0 || hs.UploadBytes >= 4*segSize {
		t.Fatalf("the holder sent %d copies and refused %d requests: want fewer than 4 copies", hs.UploadBytes/segSize, hs.UploadsRefused)
	}
}

// TestHolderServesRequestersInTurn: three viewers ask a holder whose uplink
// carries 600 KB/s for a 300 KB segment at once. It sends activeUploads (2)
// copies, then the third: the first two requesters have it after about a
// second and can pass it on, the third after one and a half. Before, all
// three were sent side by side and each had it only after one and a half
// seconds: on cable x 50, requesters projected such shared transfers late
// and completed them from the CDN.
func TestHolderServesRequestersInTurn(t *testing.T) {
	const bps = 600 << 10
	o, holder, viewers := startHolder(t, bps, 3, 4)
	ctx := context.Background()
	// The cap's burst spent, and a fast link measured, so that all three
	// are taken on and the cap alone paces them.
	if err := holder.up.WaitN(ctx, bps); err != nil {
		t.Fatal(err)
	}
	holder.uplink.mu.Lock()
	holder.uplink.rate = 100 << 20
	holder.uplink.mu.Unlock()
	var wg sync.WaitGroup
	took := make([]time.Duration, len(viewers))
	for i, v := range viewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := v.Load(ctx, req(o, 4, 20*time.Second))
			if err != nil || res.Source != SourceP2P {
				t.Errorf("viewer %d: %v from %s", i, err, res.Source)
			}
			took[i] = res.Duration
		}()
	}
	wg.Wait()
	slices.Sort(took)
	t.Logf("copies after %v", took)
	if took[0] > took[2]*85/100 {
		t.Fatalf("the first copy took %v of the last's %v: sent side by side, not in turn", took[0], took[2])
	}
}

// startHolder starts a holder whose uploads are capped at bps and n viewers
// connected to it, and has the holder load segment seg from the CDN: every
// viewer sees it announced (and trusts its hash) on return.
func startHolder(t *testing.T, bps, n int, seg uint64) (*testOrigin, *Agent, []*Agent) {
	o, tr := startOrigin(t), startTracker(t)
	holder := startAgent(t, tr, func(c *Config) { c.UploadBytesPerSecond = bps })
	viewers := make([]*Agent, n)
	for i := range viewers {
		viewers[i] = startAgent(t, tr, nil)
	}
	waitPeersWithin(t, 20*time.Second, n, append([]*Agent{holder}, viewers...)...)
	if _, err := holder.Load(context.Background(), req(o, seg, 0)); err != nil {
		t.Fatal(err)
	}
	for _, v := range viewers {
		waitHolds(t, v, req(o, seg, 0))
	}
	return o, holder, viewers
}
