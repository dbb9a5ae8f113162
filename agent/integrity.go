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
// matches a hash trusted in the order trust.go sets out (the origin's
// manifest, the tracker's notary for the same CDN origin, the quorum where
// the tracker runs one). With no trusted hash, the segment comes from the
// CDN. A peer whose bytes fail is dropped at once, never used again, and
// reported to the tracker. Every use asks one of three questions:
// mayTakeFromPeers, goodFromPeer and keepCDNCopy.

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
	// SlowFirstWord holds the agent's first message on each new peer
	// connection (its have list) this long, as a browser page whose main
	// thread is busy does.
	SlowFirstWord time.Duration
}

// integrity reports whether the tracker vouches for hashes.
func (a *Agent) integrity() bool { return a.integrityMode() != "" }

// integrityMode is the tracker's Limits.Integrity ("" while disconnected
// or when it vouches for nothing).
func (a *Agent) integrityMode() string {
	if m, ok := a.mode.Load().(string); ok {
		return m
	}
	return ""
}

// expected is the hash a copy of k served at src must have. check is false
// when peers' bytes are taken unverified (no integrity, and the origin
// publishes no manifest there); ok is false when nothing may be taken from
// peers yet.
func (a *Agent) expected(k segKey, src signaling.Source) (sum [32]byte, check, ok bool) {
	noManifest := a.noManifest(src.URL)
	sum, lvl := a.trust.best(k, src.URL, a.integrityMode() == signaling.IntegrityQuorum && noManifest)
	if lvl != untrusted {
		return sum, true, true
	}
	if !a.integrity() && noManifest {
		return sum, false, true
	}
	return sum, true, false
}

// mayTakeFromPeers says whether a peer's copy of k could be accepted now,
// looking the origin's manifest up first when it may list k.
func (a *Agent) mayTakeFromPeers(ctx context.Context, sw *swarm, k segKey, src signaling.Source) bool {
	if _, lvl := a.trust.best(k, src.URL, false); lvl != byManifest {
		// The manifest outranks what the tracker said: ask it first (cached;
		// fetched at most once a second per folder, every 5 minutes where
		// there is none).
		a.manifestHash(ctx, sw, k, src)
	}
	_, _, ok := a.expected(k, src)
	if !ok && a.integrity() {
		a.askHash(k)
	}
	return ok
}

// askHash asks the tracker what it vouches for k, at most once per
// hashAskEvery: a join brings only the last 32 hashes of a swarm, and a
// VOD viewer starting at the beginning of a title wants older ones. The
// answer comes as the tracker's hash messages (learnHash), which wake the
// loads waiting.
func (a *Agent) askHash(k segKey) {
	now := time.Now()
	a.askMu.Lock()
	if t, ok := a.asked[k]; ok && now.Sub(t) < hashAskEvery {
		a.askMu.Unlock()
		return
	}
	if a.asked == nil || len(a.asked) >= maxAsked {
		a.asked = map[segKey]time.Time{} // forget: at worst a segment is asked again
	}
	a.asked[k] = now
	a.askMu.Unlock()
	a.sendTracker(&signaling.Message{Type: signaling.TypeHash, Swarm: &k.swarm, Segment: strconv.FormatUint(k.seq, 10)})
}

// announceFetch tells the tracker that k is being fetched from the CDN at
// url now, when its notary will vouch for it (no manifest lists it, nothing
// trusts it yet): the notary fetches alongside rather than after this
// agent's report, and the swarm may take it from peers one CDN fetch time
// sooner (on a slow CDN, before its deadlines ran out).
func (a *Agent) announceFetch(k segKey, src signaling.Source) {
	if a.integrityMode() != signaling.IntegrityNotary || a.p2pOff.Load() || !a.noManifest(src.URL) {
		return
	}
	if _, lvl := a.trust.best(k, src.URL, false); lvl != untrusted {
		return
	}
	a.sendTracker(&signaling.Message{Type: signaling.TypeHash, Swarm: &k.swarm, Segment: strconv.FormatUint(k.seq, 10), URL: src.URL, Range: src.RangeString()})
}

// hashAskEvery spaces the hash queries of one segment: its notary fetch
// may be under way.
const hashAskEvery = time.Second

// maxAsked bounds the memory of hash queries.
const maxAsked = 1024

// goodFromPeer checks a peer's copy of k, served by the CDN at url.
func (a *Agent) goodFromPeer(k segKey, src signaling.Source, data []byte) bool {
	want, check, ok := a.expected(k, src)
	return ok && (!check || sha256.Sum256(data) == want)
}

// keepCDNCopy decides whether the agent's own CDN copy of k may be kept
// and shared, and reports its hash toward the tracker's vouching. A copy
// that disagrees with the manifest or the notary (a response cut short
// without a length, a broken proxy) is neither kept nor reported; one that
// disagrees with the quorum is evidence against the quorum's reporters,
// and the quorum's hash is dropped instead.
func (a *Agent) keepCDNCopy(ctx context.Context, sw *swarm, k segKey, src signaling.Source, data []byte) bool {
	if _, lvl := a.trust.best(k, src.URL, true); lvl < byNotary && (a.integrity() || !a.noManifest(src.URL)) {
		a.manifestHash(ctx, sw, k, src) // check our own copy too, if the origin lists it
	}
	got := sha256.Sum256(data)
	want, lvl := a.trust.best(k, src.URL, true)
	switch {
	case lvl >= byNotary && got != want:
		a.log.Warn("CDN bytes do not match the origin's hash: not shared", "url", src.URL, "range", src.RangeString())
		return false
	case lvl == byQuorum && got != want:
		a.log.Warn("CDN bytes contradict the quorum's hash: the quorum's hash is dropped", "url", src.URL, "range", src.RangeString())
		a.trust.dispute(k)
	}
	if lvl != byManifest {
		// The origin's manifest vouches already: a report would only cost
		// the notary a fetch.
		a.reportHash(k, got, data, src)
	}
	return true
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
	k := segKey{*m.Swarm, seq}
	switch {
	case m.CDN != "":
		a.trust.learnNotary(k, m.CDN, [32]byte(b))
	case a.integrityMode() == signaling.IntegrityQuorum:
		a.trust.learnQuorum(k, [32]byte(b))
	default:
		return
	}
	if sw := a.swarmFor(m.Swarm); sw != nil {
		sw.notify()
	}
}

// reportHash tells the tracker the hash of a segment fetched whole from
// the CDN, and where from (a member's word: not in the control cohort).
func (a *Agent) reportHash(k segKey, sum [32]byte, data []byte, src signaling.Source) {
	if !a.integrity() || a.p2pOff.Load() {
		return
	}
	if adv := a.cfg.Adversary; adv != nil && adv.LieHashes {
		sum = sha256.Sum256(corrupt(data))
	}
	a.sendTracker(&signaling.Message{Type: signaling.TypeHash, Swarm: &k.swarm,
		Segment: strconv.FormatUint(k.seq, 10), SHA256: hex.EncodeToString(sum[:]), URL: src.URL, Range: src.RangeString()})
}

// badPeer drops a peer whose bytes failed verification, for good, and
// reports it.
func (a *Agent) badPeer(sw *swarm, r *remote, k segKey) {
	a.stats.corrupt.Add(1)
	a.log.Warn("peer sent a corrupt segment: dropped", "peer", r.id, "seq", k.seq)
	sw.ban(r.id)
	r.closeFor(GoneCorrupt)
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
