package agent

import (
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
