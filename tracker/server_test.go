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
