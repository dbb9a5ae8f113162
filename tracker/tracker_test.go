package tracker

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/peercdn/peercdn/signaling"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(floodEnv); addr != "" {
		runFlooders(addr) // a child of BenchmarkRoundTripUnderPingFlood
		return
	}
	goleak.VerifyTestMain(m)
}

var live = signaling.Swarm{Content: "/demo/live/master.m3u8", Rendition: "720p"}

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

func TestMessageTooBigCloses1009(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxMessageBytes = 4096 })
	a := n.dial(t, "")
	big := `{"type":"ping","ref":"` + strings.Repeat("x", 5000) + `"}`
	a.SendRaw(context.Background(), []byte(big))
	if code := expectClose(t, a, 3*time.Second); code != int(websocket.StatusMessageTooBig) {
		t.Fatalf("close code %d, want 1009", code)
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

func TestRateLimitPerConnection(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MessagesPerSecond = 5; c.MessageBurst = 10; c.MaxStrikes = 30 })
	a := n.dial(t, "")
	ctx := context.Background()
	for range 15 {
		a.Send(ctx, &signaling.Message{Type: signaling.TypePing})
	}
	pongs, limited := 0, 0
	for _, m := range drain(a, 300*time.Millisecond) {
		switch {
		case m.Type == signaling.TypePong:
			pongs++
		case m.Code == signaling.CodeRateLimited:
			limited++
		}
	}
	// The burst is 10, the hello took one; a slow machine may refill one more.
	if pongs < 9 || pongs > 11 || limited != 1 {
		t.Fatalf("pongs %d (want the burst, about 9), rate_limited errors %d (want 1: repeats are suppressed)", pongs, limited)
	}
	// Keep flooding: after max_strikes the connection is closed with 1008.
	for range 40 {
		a.Send(ctx, &signaling.Message{Type: signaling.TypePing})
	}
	if code := expectClose(t, a, 3*time.Second); code != int(websocket.StatusPolicyViolation) {
		t.Fatalf("close code %d, want 1008", code)
	}
}

func TestRateLimitPerIP(t *testing.T) {
	n := startNode(t, func(c *Config) {
		c.MessagesPerSecond, c.MessageBurst = 1, 20
		c.IPMessagesPerSecond, c.IPMessageBurst = 1, 30
	})
	a, b := n.dial(t, ""), n.dial(t, "") // the hellos used 2 of the IP's 30
	ctx := context.Background()
	for range 15 {
		a.Send(ctx, &signaling.Message{Type: signaling.TypePing})
		b.Send(ctx, &signaling.Message{Type: signaling.TypePing})
	}
	count := func(c *client) (pongs, limited int) {
		for _, m := range drain(c, 300*time.Millisecond) {
			if m.Type == signaling.TypePong {
				pongs++
			} else if m.Code == signaling.CodeRateLimited {
				limited++
			}
		}
		return
	}
	pa, la := count(a)
	pb, lb := count(b)
	// Each connection is under its own limit (15 < 20); together they are over
	// the IP's 28 remaining.
	if pa+pb > 29 || la+lb == 0 {
		t.Fatalf("pongs %d+%d, rate_limited %d+%d: the per-IP limit did not hold", pa, pb, la, lb)
	}
}

func TestConnectionsPerIP(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxConnsPerIP = 2 })
	n.dial(t, "")
	n.dial(t, "")
	_, resp, err := websocket.Dial(context.Background(), n.url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection: err %v, resp %v; want 429", err, resp)
	}
}

func TestConnectionsPerNode(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxConns = 1 })
	n.dial(t, "")
	_, resp, err := websocket.Dial(context.Background(), n.url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second connection: err %v, resp %v; want 503", err, resp)
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

func TestIdleTimeout(t *testing.T) {
	n := startNode(t, func(c *Config) { c.IdleTimeout = time.Second })
	a := n.dial(t, "")
	if hb := a.Welcome().HeartbeatMs; hb <= 0 || hb >= 1000 {
		t.Fatalf("heartbeat %d ms must be under the idle timeout", hb)
	}
	// An agent that keeps the heartbeat stays.
	b := n.dial(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.Keepalive(ctx, nil, nil)
	if code := expectClose(t, a, 3*time.Second); code != int(websocket.StatusPolicyViolation) {
		t.Fatalf("idle close code %d, want 1008", code)
	}
	eventually(t, 3*time.Second, "only the connection keeping its heartbeat to stay", func() bool {
		_, _, conns := n.srv.Counts()
		return conns == 1
	})
	select {
	case <-b.closed:
		t.Fatalf("the agent keeping its heartbeat was closed: %v", b.err)
	default:
	}
}

func TestHandshakeTimeout(t *testing.T) {
	n := startNode(t, func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	ws := n.rawDial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, _, err := ws.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("silent connection: %v, want close 1008", err)
	}
}

func TestHelloFirstAndVersion(t *testing.T) {
	n := startNode(t, nil)
	for _, tc := range []struct {
		name  string
		first string
		code  signaling.Code
	}{
		{"join before hello", `{"type":"join","swarm":{"content":"/x"}}`, signaling.CodeHelloFirst},
		{"future version", `{"type":"hello","v":99}`, signaling.CodeUnsupportedVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := n.rawDial(t)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			ws.Write(ctx, websocket.MessageText, []byte(tc.first))
			_, b, err := ws.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m, err := signaling.Decode(b)
			if err != nil || m.Code != tc.code {
				t.Fatalf("got %s %v, want error %s", b, err, tc.code)
			}
			_, _, err = ws.Read(ctx)
			if websocket.CloseStatus(err) != websocket.StatusProtocolError {
				t.Fatalf("then %v, want close 1002", err)
			}
		})
	}
}

func TestBadMessagesGetCodedErrors(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxStrikes = 5 })
	a := n.dial(t, "")
	ctx := context.Background()
	for raw, ref := range map[string]string{`not json`: "", `{"type":"nope","ref":"r1"}`: "r1",
		`{"type":"offer","to":"x","ref":"r2"}`: "r2", `{"type":"welcome","peer_id":"x"}`: ""} {
		a.SendRaw(ctx, []byte(raw))
		if m := recv(t, a); m.Code != signaling.CodeBadMessage || m.Text == "" || m.Ref != ref {
			t.Fatalf("%s: got %+v, want bad_message with a reason and ref %q", raw, m, ref)
		}
	}
	a.SendRaw(ctx, []byte(`{}`))
	expect(t, a, signaling.TypeError, signaling.CodeBadMessage)
	if code := expectClose(t, a, 3*time.Second); code != int(websocket.StatusPolicyViolation) {
		t.Fatalf("after max_strikes: close %d, want 1008", code)
	}
}

func TestAllowedOrigins(t *testing.T) {
	n := startNode(t, func(c *Config) { c.AllowedOrigins = []string{"*.example.com", "https://player.test"} })
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"https://www.example.com", true},
		{"https://player.test", true},
		{"http://player.test", false},
		{"https://evil.test", false},
		{"https://example.com.evil.test", false},
		{"", true}, // not a browser page; see checkOrigin
	} {
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		c, resp, err := websocket.Dial(context.Background(), n.url, &websocket.DialOptions{HTTPHeader: h})
		if tc.ok != (err == nil) {
			t.Errorf("origin %q: err %v, want allowed=%v", tc.origin, err, tc.ok)
		}
		if !tc.ok && resp != nil && resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %q: status %d, want 403", tc.origin, resp.StatusCode)
		}
		if c != nil {
			c.CloseNow()
		}
	}
}

func TestJoinTokens(t *testing.T) {
	secret := "0123456789abcdef-secret"
	n := startNode(t, func(c *Config) { c.TokenSecret = secret })
	a := n.dial(t, "")
	now := time.Now()
	for _, tc := range []struct {
		name  string
		token string
		code  signaling.Code
	}{
		{"missing", "", signaling.CodeBadToken},
		{"garbage", "v1.x.y", signaling.CodeBadToken},
		{"other content", Token([]byte(secret), "/other.m3u8", now.Add(time.Hour)), signaling.CodeBadToken},
		{"other secret", Token([]byte("another-secret-of-16"), live.Content, now.Add(time.Hour)), signaling.CodeBadToken},
		{"expired", Token([]byte(secret), live.Content, now.Add(-time.Second)), signaling.CodeTokenExpired},
		{"valid", Token([]byte(secret), live.Content, now.Add(time.Hour)), ""},
	} {
		m := join(t, a, live, tc.token)
		if m.Code != tc.code {
			t.Errorf("%s token: got %s %s, want %q", tc.name, m.Type, m.Code, tc.code)
		}
	}
	// A reconnecting agent is checked again.
	b := n.dial(t, "")
	if m := join(t, b, live, Token([]byte(secret), live.Content, now.Add(-time.Minute))); m.Code != signaling.CodeTokenExpired {
		t.Fatalf("reconnect with expired token: %+v", m)
	}
}

func TestDrainSendsGoAway(t *testing.T) {
	n := startNode(t, func(c *Config) { c.RetrySpread = time.Second })
	a, b := n.dial(t, ""), n.dial(t, "")
	join(t, a, live, "")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		done <- n.srv.Drain(ctx)
	}()
	m := expect(t, a, signaling.TypeGoAway, "")
	if m.RetryMs < 0 || m.RetryMs > 1000 {
		t.Fatalf("retry_ms %d outside the spread", m.RetryMs)
	}
	expect(t, b, signaling.TypeGoAway, "")
	resp, err := http.Get(n.hs.URL + "/readyz")
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while draining: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, _, err := websocket.Dial(context.Background(), n.url, nil); err == nil {
		t.Fatal("new connection accepted while draining")
	}
	a.Close()
	// b ignores the goaway: it is closed at the deadline with 1001.
	if code := expectClose(t, b, 5*time.Second); code != int(websocket.StatusGoingAway) {
		t.Fatalf("close %d, want 1001", code)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p, s, c := n.srv.Counts(); p+s+c != 0 {
		t.Fatalf("after drain: %d peers, %d swarms, %d conns", p, s, c)
	}
}

// A connection upgraded just before a node starts draining, and
// registered just after Drain took its count, is refused with 1001 rather
// than slipping in uncounted: Drain does not wait for it, and the race
// detector sees no WaitGroup growing from zero during Drain's Wait (which
// it caught in a CI run).
func TestDrainRacesAnUpgrade(t *testing.T) {
	n := startNode(t, nil)
	upgraded, release := make(chan struct{}), make(chan struct{})
	n.srv.testHookUpgraded = func() {
		close(upgraded)
		<-release
	}
	dialed := make(chan *websocket.Conn, 1)
	go func() {
		c, _, err := websocket.Dial(context.Background(), n.url, nil)
		if err != nil {
			t.Error(err)
		}
		dialed <- c
	}()
	<-upgraded
	drained := make(chan time.Duration, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		n.srv.Drain(ctx)
		drained <- time.Since(start)
	}()
	eventually(t, time.Second, "draining", n.srv.draining.Load)
	close(release)
	c := <-dialed
	if c == nil {
		return
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
		t.Errorf("the late connection read %v, want a 1001 close", err)
	}
	if d := <-drained; d > time.Second {
		t.Errorf("Drain took %v: it waited for a connection it never counted", d)
	}
	if _, _, conns := n.srv.Counts(); conns != 0 {
		t.Errorf("%d connections after the drain", conns)
	}
}

func TestOperationsEndpoints(t *testing.T) {
	n := startNode(t, nil)
	a, b := n.dial(t, ""), n.dial(t, "")
	join(t, a, live, "")
	join(t, b, live, "")
	send(t, b, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: a.PeerID(), OfferID: "o", SDP: "s"})
	expect(t, a, signaling.TypeOffer, "")
	send(t, a, &signaling.Message{Type: signaling.TypeAnswer, Swarm: &live, To: "nobody", OfferID: "o", SDP: "s"})
	expect(t, a, signaling.TypeError, signaling.CodeUnknownPeer)

	get := func(path string) string {
		resp, err := http.Get(n.hs.URL + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", path, resp, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	get("/healthz")
	get("/readyz")
	var st Stats
	if err := json.Unmarshal([]byte(get("/stats.json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Swarms != 1 || len(st.SwarmStats) != 1 || st.SwarmStats[0].Peers != 2 || st.SwarmStats[0].Joins != 2 ||
		st.SwarmStats[0].Content != live.Content || st.SwarmStats[0].Rendition != live.Rendition {
		t.Fatalf("stats.json: %+v", st)
	}
	metrics := get("/metrics")
	for _, want := range []string{
		"peercdn_tracker_connections 2",
		"peercdn_tracker_swarms 1",
		"peercdn_tracker_swarm_members 2",
		`peercdn_tracker_messages_total{type="offer"} 1`,
		`peercdn_tracker_rejects_total{reason="unknown_peer"}`,
		"peercdn_tracker_relay_seconds_count 1",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
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
