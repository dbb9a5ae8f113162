package agent

import (
	"context"
	"testing"
	"time"
)

// TestDialsAtOnce: a viewer joining four others with DialsAtOnce 1 makes
// one offer at a time, and still connects to all four (each next offer
// once the one before opened).
func TestDialsAtOnce(t *testing.T) {
	tr := startTracker(t)
	var early []*Agent
	for range 4 {
		early = append(early, startAgent(t, tr, func(c *Config) { c.DialsAtOnce = 1 }))
	}
	for _, a := range early { // they join first, and meet each other
		a.Join(testSwarm)
	}
	waitPeers(t, 3, early...)
	late := startAgent(t, tr, func(c *Config) { c.DialsAtOnce = 1 })
	late.Join(testSwarm)
	waitPeersWithin(t, 20*time.Second, 4, late)
	sw := late.swarmFor(&testSwarm)
	sw.mu.Lock()
	peak := sw.dialPeak
	sw.mu.Unlock()
	if peak != 1 {
		t.Fatalf("%d offers were under way at once; want 1", peak)
	}
}

// TestLateJoinerWaitsForItsFirstPeersList: a late joiner's load waits for
// its first peer, whose have list comes a moment after the channel opens
// (on a busy page, 400 ms here). It must read that list before it decides
// to seed the segment from the CDN: before, it woke as the channel
// opened, saw no holder, found itself first in line for a segment its
// only peer held, and fetched its own copy.
func TestLateJoinerWaitsForItsFirstPeersList(t *testing.T) {
	o, tr := startOrigin(t), startTracker(t)
	holder := startAgent(t, tr, func(c *Config) { c.Adversary = &Adversary{SlowFirstWord: 400 * time.Millisecond} })
	late := startAgent(t, tr, nil)
	waitIDs(t, holder, late)
	// A segment for which the late joiner ranks first: it is elected to
	// seed it if it does not know that the holder has it.
	n := electedSeq(o, 1, late, holder)
	ctx := context.Background()
	if _, err := holder.Load(ctx, req(o, n, 0)); err != nil {
		t.Fatal(err)
	}
	r, err := late.Load(ctx, req(o, n, 6*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if r.Source != SourceP2P || late.Stats().CDNBytes != 0 {
		t.Fatalf("the late joiner's copy came from %s (%s), with %d bytes from the CDN; want its peer's", r.Source, r.Why, late.Stats().CDNBytes)
	}
}

// waitIDs waits until each agent has its peer id from the tracker.
func waitIDs(t *testing.T, agents ...*Agent) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, a := range agents {
		for a.PeerID() == "" {
			if time.Now().After(deadline) {
				t.Fatal("no peer id from the tracker")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
