package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/peercdn/peercdn/peerwire"
	"github.com/peercdn/peercdn/signaling"
)

// Integrity: a peer's bytes reach the player only when their SHA-256
// matches a hash the tracker vouches for (hash_quorum independent viewers
// reported it after fetching the segment from the CDN themselves). With
// no trusted hash yet, the segment comes from the CDN. A peer whose bytes
// fail is dropped at once, never used again, and reported to the tracker.

// maxHashes bounds the trusted hashes an agent remembers.
const maxHashes = 4096

// hashes are the trusted hashes the tracker pushed.
type hashes struct {
	m     map[segKey][32]byte
	order []segKey
}

// Adversary makes an agent hostile, for load tests of the defences
// (`peercdn swarm --hostile`). Never set it in a real viewer.
type Adversary struct {
	// CorruptUploads flips bytes in every segment the agent uploads.
	CorruptUploads bool
	// LieHashes reports the hash of a corrupted copy of each CDN segment,
	// and uploads that corrupted copy: a consistent liar.
	LieHashes bool
	// FloodRequests sends each connected peer 1,000 requests a second, and
	// the tracker offers to made-up peers, forged answers and candidates.
	FloodRequests bool
	// SlowUploads trickles uploads at about 2 KB/s.
	SlowUploads bool
}

// integrity reports whether the tracker vouches for hashes, so that peers'
// bytes must match one.
func (a *Agent) integrity() bool { return a.quorum.Load() > 0 }

func (a *Agent) trustedHash(k segKey) ([32]byte, bool) {
	a.hmu.Lock()
	defer a.hmu.Unlock()
	h, ok := a.hashes.m[k]
	return h, ok
}

// mayTakeFromPeers says whether a peer's copy of k could be accepted now.
func (a *Agent) mayTakeFromPeers(k segKey) bool {
	if !a.integrity() {
		return true
	}
	_, ok := a.trustedHash(k)
	return ok
}

// verified checks a peer's copy of k against the trusted hash.
func (a *Agent) verified(k segKey, data []byte) bool {
	if !a.integrity() {
		return true
	}
	want, ok := a.trustedHash(k)
	return ok && sha256.Sum256(data) == want
}

// learnHash stores a hash the tracker vouches for and wakes loads waiting
// for it.
func (a *Agent) learnHash(m *signaling.Message) {
	seq, err := strconv.ParseUint(m.Segment, 10, 64)
	if err != nil || m.Swarm == nil {
		return
	}
	b, err := hex.DecodeString(m.SHA256)
	if err != nil || len(b) != 32 {
		return
	}
	a.addTrusted(segKey{*m.Swarm, seq}, [32]byte(b))
	if sw := a.swarmFor(m.Swarm); sw != nil {
		sw.notify()
	}
}

// addTrusted remembers a hash from the tracker or the origin's manifest.
func (a *Agent) addTrusted(k segKey, sum [32]byte) {
	a.hmu.Lock()
	defer a.hmu.Unlock()
	if _, ok := a.hashes.m[k]; ok {
		return
	}
	a.hashes.m[k] = sum
	a.hashes.order = append(a.hashes.order, k)
	if len(a.hashes.order) > maxHashes {
		delete(a.hashes.m, a.hashes.order[0])
		a.hashes.order = a.hashes.order[1:]
	}
}

// reportHash tells the tracker the hash of a segment fetched whole from
// the CDN, toward the quorum (a member's word: not in the control cohort).
func (a *Agent) reportHash(k segKey, data []byte, url string) {
	if !a.integrity() || a.p2pOff.Load() {
		return
	}
	sum := sha256.Sum256(data)
	if adv := a.cfg.Adversary; adv != nil && adv.LieHashes {
		sum = sha256.Sum256(corrupt(data))
	}
	a.sendTracker(&signaling.Message{Type: signaling.TypeHash, Swarm: &k.swarm,
		Segment: strconv.FormatUint(k.seq, 10), SHA256: hex.EncodeToString(sum[:]), URL: url})
}

// badPeer drops a peer whose bytes failed verification, for good, and
// reports it.
func (a *Agent) badPeer(sw *swarm, r *remote, k segKey) {
	a.stats.corrupt.Add(1)
	a.log.Warn("peer sent a corrupt segment: dropped", "peer", r.id, "seq", k.seq)
	sw.ban(r.id)
	r.close()
	a.emit(Event{Kind: EventPeerDropped, Peer: r.id})
	a.sendTracker(&signaling.Message{Type: signaling.TypeReport, Swarm: &k.swarm, To: r.id,
		Segment: strconv.FormatUint(k.seq, 10)})
}

// sendTracker sends m if connected; lost otherwise (hashes and reports are
// advisory).
func (a *Agent) sendTracker(m *signaling.Message) {
	a.mu.Lock()
	c := a.sig
	a.mu.Unlock()
	if c != nil {
		go c.Send(context.Background(), m)
	}
}

// corrupt returns a copy of b with bytes flipped, for Adversary.
func corrupt(b []byte) []byte {
	out := append([]byte(nil), b...)
	for i := len(out) / 3; i < len(out); i += 997 {
		out[i] ^= 0x5a
	}
	return out
}

// flood sends the peer 1,000 requests a second until it goes (Adversary).
func (r *remote) flood() {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for id := uint32(1 << 31); ; id++ {
		select {
		case <-r.closed:
			return
		case <-t.C:
			if !r.send(peerwire.Request(id, uint64(id), 0)) {
				return
			}
		}
	}
}

// floodTracker sends the tracker 1,000 bogus relays a second (Adversary):
// offers to made-up peer ids, answers and candidates for offers never made.
func (a *Agent) floodTracker(ctx context.Context, c *signaling.Client) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	types := []signaling.Type{signaling.TypeOffer, signaling.TypeAnswer, signaling.TypeCandidate}
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		var sw *signaling.Swarm
		for id := range a.swarms {
			sw = &id
			break
		}
		a.mu.Unlock()
		if sw == nil {
			continue
		}
		m := &signaling.Message{Type: types[i%3], Swarm: sw, To: randomID() + randomID(), OfferID: randomID(), SDP: "v=0", Candidate: "candidate:0"}
		if c.Send(ctx, m) != nil {
			return // cut off
		}
	}
}
