package tracker

import (
	"strings"
	"testing"
	"time"

	"github.com/peercdn/peercdn/signaling"
)

func TestIntroductionAndRelayRoundTrip(t *testing.T) {
	n := startNode(t, nil)
	a, b := n.dial(t, ""), n.dial(t, "")
	if a.PeerID() == b.PeerID() || len(a.PeerID()) < 20 {
		t.Fatalf("peer ids %q %q: want distinct and unguessable", a.PeerID(), b.PeerID())
	}
	w := a.Welcome()
	if w.V != signaling.Version || w.Limits == nil || w.Limits.MaxMessageBytes != DefaultConfig().MaxMessageBytes || w.HeartbeatMs <= 0 {
		t.Fatalf("welcome lacks version, limits or heartbeat: %+v", w)
	}

	if m := join(t, a, live, ""); m.Type != signaling.TypePeers || len(m.Peers) != 0 {
		t.Fatalf("first joiner: got %+v, want empty peers", m)
	}
	m := join(t, b, live, "")
	if m.Type != signaling.TypePeers || len(m.Peers) != 1 || m.Peers[0] != a.PeerID() {
		t.Fatalf("newcomer: got %+v, want [%s]", m, a.PeerID())
	}

	sdp := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n" + strings.Repeat("a=x:\"quoted\" ünïcode\r\n", 20)
	send(t, b, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: a.PeerID(), OfferID: "o1", SDP: sdp})
	got := expect(t, a, signaling.TypeOffer, "")
	if got.From != b.PeerID() || got.SDP != sdp || got.OfferID != "o1" || *got.Swarm != live || got.To != "" {
		t.Fatalf("offer arrived altered: %+v", got)
	}
	send(t, a, &signaling.Message{Type: signaling.TypeAnswer, Swarm: &live, To: b.PeerID(), OfferID: "o1", SDP: "answer-sdp"})
	if got := expect(t, b, signaling.TypeAnswer, ""); got.From != a.PeerID() || got.SDP != "answer-sdp" {
		t.Fatalf("answer arrived altered: %+v", got)
	}
	cand := "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"
	send(t, a, &signaling.Message{Type: signaling.TypeCandidate, Swarm: &live, To: b.PeerID(), OfferID: "o1", Candidate: cand})
	send(t, b, &signaling.Message{Type: signaling.TypeCandidate, Swarm: &live, To: a.PeerID(), OfferID: "o1", Candidate: cand + " b"})
	if got := expect(t, b, signaling.TypeCandidate, ""); got.Candidate != cand || got.From != a.PeerID() {
		t.Fatalf("candidate a->b: %+v", got)
	}
	if got := expect(t, a, signaling.TypeCandidate, ""); got.Candidate != cand+" b" || got.From != b.PeerID() {
		t.Fatalf("candidate b->a: %+v", got)
	}
	// An end-of-candidates marker (empty candidate) is relayed too.
	send(t, a, &signaling.Message{Type: signaling.TypeCandidate, Swarm: &live, To: b.PeerID(), OfferID: "o1"})
	if got := expect(t, b, signaling.TypeCandidate, ""); got.Candidate != "" {
		t.Fatalf("end of candidates: %+v", got)
	}
}

func TestOtherSwarmCannotReach(t *testing.T) {
	n := startNode(t, nil)
	a, b, c := n.dial(t, ""), n.dial(t, ""), n.dial(t, "")
	join(t, a, live, "")
	join(t, b, live, "")
	other := signaling.Swarm{Content: "/other.m3u8"}
	if m := join(t, c, other, ""); len(m.Peers) != 0 {
		t.Fatalf("other swarm suggested %v", m.Peers)
	}
	// c names a's swarm without being in it, and its own swarm with a's id.
	send(t, c, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: a.PeerID(), OfferID: "x", SDP: "s"})
	expect(t, c, signaling.TypeError, signaling.CodeNotInSwarm)
	send(t, c, &signaling.Message{Type: signaling.TypeOffer, Swarm: &other, To: a.PeerID(), OfferID: "x", SDP: "s"})
	expect(t, c, signaling.TypeError, signaling.CodeUnknownPeer)
	expectNothing(t, a, 200*time.Millisecond)

	// Same content from another page origin is another swarm.
	d := n.dial(t, "https://elsewhere.example")
	if m := join(t, d, live, ""); len(m.Peers) != 0 {
		t.Fatalf("origin scoping: other origin was suggested %v", m.Peers)
	}
	send(t, d, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: a.PeerID(), OfferID: "x", SDP: "s"})
	expect(t, d, signaling.TypeError, signaling.CodeUnknownPeer)
	expectNothing(t, a, 200*time.Millisecond)
}

func TestAnswerMustMatchRelayedOffer(t *testing.T) {
	n := startNode(t, nil)
	a, b, c := n.dial(t, ""), n.dial(t, ""), n.dial(t, "")
	for _, x := range []*client{a, b, c} {
		join(t, x, live, "")
	}
	// An answer for an offer never made.
	send(t, b, &signaling.Message{Type: signaling.TypeAnswer, Swarm: &live, To: a.PeerID(), OfferID: "never", SDP: "s"})
	expect(t, b, signaling.TypeError, signaling.CodeUnknownOffer)
	// a offers to b; c forges b's answer; a candidate from c for that offer.
	send(t, a, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: b.PeerID(), OfferID: "o", SDP: "s"})
	expect(t, b, signaling.TypeOffer, "")
	send(t, c, &signaling.Message{Type: signaling.TypeAnswer, Swarm: &live, To: a.PeerID(), OfferID: "o", SDP: "forged"})
	expect(t, c, signaling.TypeError, signaling.CodeUnknownOffer)
	send(t, c, &signaling.Message{Type: signaling.TypeCandidate, Swarm: &live, To: a.PeerID(), OfferID: "o", Candidate: "c"})
	expect(t, c, signaling.TypeError, signaling.CodeUnknownOffer)
	// A "from" field cannot spoof the sender: the tracker writes it.
	send(t, c, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: a.PeerID(), From: b.PeerID(), OfferID: "p", SDP: "s"})
	if m := expect(t, a, signaling.TypeOffer, ""); m.From != c.PeerID() {
		t.Fatalf("spoofed from %q reached a as %q", b.PeerID(), m.From)
	}
	expectNothing(t, a, 100*time.Millisecond)
	// The real answer still works.
	send(t, b, &signaling.Message{Type: signaling.TypeAnswer, Swarm: &live, To: a.PeerID(), OfferID: "o", SDP: "real"})
	if m := expect(t, a, signaling.TypeAnswer, ""); m.SDP != "real" {
		t.Fatal(m.SDP)
	}
}

func TestSuggestionsSpreadLoad(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Suggestions = 2; c.MaxConnsPerIP = 100 })
	var seeders []*client
	for range 6 {
		s := n.dial(t, "")
		join(t, s, live, "")
		seeders = append(seeders, s)
	}
	// Seeders with no free slots are suggested last.
	full := seeders[0]
	send(t, full, &signaling.Message{Type: signaling.TypePing, Slots: new(0)})
	expect(t, full, signaling.TypePong, "")
	counts := map[string]int{}
	for range 6 {
		m := join(t, n.dial(t, ""), live, "")
		for _, p := range m.Peers {
			counts[p]++
		}
	}
	if counts[full.PeerID()] != 0 {
		t.Errorf("peer without free slots suggested %d times", counts[full.PeerID()])
	}
	// 6 newcomers x 2 suggestions over 5 open seeders (plus newcomers): no one
	// is handed to everyone.
	for id, c := range counts {
		if c > 4 {
			t.Errorf("peer %s suggested %d of 6 times: load not spread (%v)", id[:6], c, counts)
		}
	}
}

func TestSwarmsPerConnection(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxSwarmsPerConn = 3 })
	a := n.dial(t, "")
	for i := range 3 {
		if m := join(t, a, signaling.Swarm{Content: "/t", Rendition: string(rune('a' + i))}, ""); m.Type != signaling.TypePeers {
			t.Fatalf("join %d: %+v", i, m)
		}
	}
	m := join(t, a, signaling.Swarm{Content: "/t", Rendition: "z"}, "")
	if m.Code != signaling.CodeTooManySwarms {
		t.Fatalf("4th swarm: %+v", m)
	}
	// Leaving frees a slot.
	send(t, a, &signaling.Message{Type: signaling.TypeLeave, Swarm: &signaling.Swarm{Content: "/t", Rendition: "a"}})
	if m := join(t, a, signaling.Swarm{Content: "/t", Rendition: "z"}, ""); m.Type != signaling.TypePeers {
		t.Fatalf("after leave: %+v", m)
	}
}

func TestPeersPerSwarm(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxPeersPerSwarm = 2 })
	join(t, n.dial(t, ""), live, "")
	join(t, n.dial(t, ""), live, "")
	if m := join(t, n.dial(t, ""), live, ""); m.Code != signaling.CodeSwarmFull {
		t.Fatalf("third peer: %+v", m)
	}
}

func TestPendingOffersLimit(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxPendingOffers = 3 })
	a, b := n.dial(t, ""), n.dial(t, "")
	join(t, a, live, "")
	join(t, b, live, "")
	for i := range 3 {
		send(t, a, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: b.PeerID(), OfferID: string(rune('a' + i)), SDP: "s"})
		expect(t, b, signaling.TypeOffer, "")
	}
	send(t, a, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: b.PeerID(), OfferID: "d", SDP: "s"})
	expect(t, a, signaling.TypeError, signaling.CodeTooManyOffers)
	expectNothing(t, b, 100*time.Millisecond)
}

func TestDisconnectLeavesSwarms(t *testing.T) {
	n := startNode(t, nil)
	a, b := n.dial(t, ""), n.dial(t, "")
	join(t, a, live, "")
	join(t, a, signaling.Swarm{Content: "/other"}, "")
	join(t, b, live, "")
	a.CloseNow()
	eventually(t, 3*time.Second, "a's swarms to go", func() bool {
		p, s, _ := n.srv.Counts()
		return p == 1 && s == 1
	})
	if m := join(t, n.dial(t, ""), live, ""); len(m.Peers) != 1 || m.Peers[0] != b.PeerID() {
		t.Fatalf("gone peer still suggested: %v", m.Peers)
	}
}
