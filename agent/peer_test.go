package agent

import (
	"math/rand/v2"
	"testing"

	"github.com/peercdn/peercdn/peerwire"
)

// TestHaveForgetsTheEarliestAnnounced: a peer announcing more than maxHave
// segments has the ones it announced first forgotten, the latest kept.
// Segment numbers are URL hashes: before, the smallest numbers were
// forgotten, which is any of them.
func TestHaveForgetsTheEarliestAnnounced(t *testing.T) {
	a := startAgent(t, "", nil)
	r := newRemote(a, newSwarm(a, testSwarm), "peer", "offer", nil)
	rng := rand.New(rand.NewPCG(1, 2))
	var announced []uint64
	for range 5 {
		seqs := make([]uint64, peerwire.MaxHaveCount)
		for i := range seqs {
			seqs[i] = rng.Uint64()
		}
		announced = append(announced, seqs...)
		r.handle(peerwire.Have(peerwire.HaveAdd, seqs))
	}
	if len(r.have) > maxHave {
		t.Fatalf("%d segments remembered, bound %d", len(r.have), maxHave)
	}
	kept := len(r.have)
	for i, s := range announced {
		_, ok := r.have[s]
		if want := i >= len(announced)-kept; ok != want {
			t.Fatalf("segment announced %d of %d: remembered %v, want %v (%d remembered)", i, len(announced), ok, want, kept)
		}
	}
}
