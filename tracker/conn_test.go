package tracker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/peercdn/peercdn/signaling"
)

func TestMessageTooBigCloses1009(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxMessageBytes = 4096 })
	a := n.dial(t, "")
	big := `{"type":"ping","ref":"` + strings.Repeat("x", 5000) + `"}`
	a.SendRaw(context.Background(), []byte(big))
	if code := expectClose(t, a, 3*time.Second); code != int(websocket.StatusMessageTooBig) {
		t.Fatalf("close code %d, want 1009", code)
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
