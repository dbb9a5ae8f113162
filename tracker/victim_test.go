package tracker

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/peercdn/peercdn/signaling"
)

// TestVictimKeepsHonestOffers: members that know a peer's id (every member
// does, from peers) aim tiny offers at it to fill its table of received
// offers. Each holds at most maxOffersFromOne there, and a sender below its
// fair share pushes out the oldest offer of the one holding most, so an
// honest newcomer's offer still reaches the victim, however many attack.
func TestVictimKeepsHonestOffers(t *testing.T) {
	n := startNode(t, func(c *Config) {
		// The attack at its strongest: rates that never get in its way.
		c.MessagesPerSecond, c.MessageBurst = 1000, 1000
		c.IPMessagesPerSecond, c.IPMessageBurst = 100000, 100000
	})
	victim := n.dial(t, "")
	join(t, victim, live, "")
	limit := maxRecvFactor * n.srv.cfg.MaxPendingOffers
	attackers := limit/maxOffersFromOne + 8
	refused := 0
	for i := range attackers {
		a := n.dial(t, "")
		join(t, a, live, "")
		for j := range maxOffersFromOne + 2 {
			send(t, a, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: victim.PeerID(),
				OfferID: string(rune('a'+i%26)) + string(rune('a'+j)) + strings.Repeat("x", i/26), SDP: "s"})
		}
		for _, m := range drain(a, 20*time.Millisecond) {
			if m.Type == signaling.TypeError && m.Code == signaling.CodeTooManyOffers {
				refused++
			}
		}
	}
	// Each attacker was refused at least its 2 over maxOffersFromOne.
	if refused < 2*attackers {
		t.Fatalf("%d attackers were refused %d offers, want at least %d", attackers, refused, 2*attackers)
	}
	drain(victim, 50*time.Millisecond)

	for i := range 3 {
		honest := n.dial(t, "")
		join(t, honest, live, "")
		send(t, honest, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: victim.PeerID(), OfferID: "honest", SDP: "real"})
		got := false
		for _, m := range drain(victim, 100*time.Millisecond) {
			if m.Type == signaling.TypeOffer && m.From == honest.PeerID() {
				got = true
			}
		}
		if !got {
			t.Fatalf("honest offer %d did not reach the victim: %v", i, drain(honest, 50*time.Millisecond))
		}
		// The victim answers it: the offer was kept, not pushed out.
		send(t, victim, &signaling.Message{Type: signaling.TypeAnswer, Swarm: &live, To: honest.PeerID(), OfferID: "honest", SDP: "a"})
		expect(t, honest, signaling.TypeAnswer, "")
	}
}

// slowReader reads what it is sent at about 80 KB/s: a client on a weak
// link, or one that stopped reading on purpose.
type slowReader struct{ nc net.Conn }

func (r slowReader) Read(p []byte) (int, error) {
	time.Sleep(50 * time.Millisecond)
	return r.nc.Read(p[:min(len(p), 4096)])
}

// dialSlowVictim joins live over a raw socket with small kernel buffers, and
// returns its peer id and a frame reader that reads slowly.
func dialSlowVictim(t *testing.T, addr string) (string, *bufio.Reader, net.Conn) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.(*net.TCPConn).SetReadBuffer(4096)
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	nc.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	br := bufio.NewReader(nc)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	c := &rawClient{t: t, nc: nc, br: br}
	c.send(ws.OpText, true, true, helloJSON)
	welcome, err := signaling.Decode(c.next().Payload)
	if err != nil || welcome.PeerID == "" {
		t.Fatalf("welcome: %+v %v", welcome, err)
	}
	slots := 4
	b, _ := signaling.Encode(&signaling.Message{Type: signaling.TypeJoin, Swarm: &live, Slots: &slots})
	c.send(ws.OpText, true, true, b)
	if m, err := signaling.Decode(c.next().Payload); err != nil || m.Type != signaling.TypePeers {
		t.Fatalf("join: %+v %v", m, err)
	}
	return welcome.PeerID, bufio.NewReaderSize(io.MultiReader(br, slowReader{nc}), 4096), nc
}

// TestSlowReaderIsClosedWithACloseFrame: large offers relayed to a client
// that reads slower than they come end its connection with a 1008 close
// frame and a slow_consumer count, not a connection cut mid-frame: whether
// its queue fills (send_queue_bytes) or one write to it outlasts
// write_timeout.
func TestSlowReaderIsClosedWithACloseFrame(t *testing.T) {
	for _, tc := range []struct {
		name      string
		attackers int
		mutate    func(*Config)
	}{
		{"the queue fills", 4, func(c *Config) { c.SendQueueBytes = 2 * c.MaxMessageBytes }},
		// 8 offers fit the default queue: only the write times out.
		{"a write outlasts write_timeout", 1, func(c *Config) { c.WriteTimeout = 200 * time.Millisecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(t, func(c *Config) {
				c.MessagesPerSecond, c.MessageBurst = 1000, 1000
				c.IPMessagesPerSecond, c.IPMessageBurst = 100000, 100000
				tc.mutate(c)
			})
			hs := httptest.NewUnstartedServer(srv.Handler())
			hs.Listener = smallSendBuffers{hs.Listener}
			hs.Start()
			t.Cleanup(func() { hs.Close(); srv.Close() })
			n := &testNode{srv: srv, hs: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}

			victim, frames, _ := dialSlowVictim(t, strings.TrimPrefix(hs.URL, "http://"))
			sdp := strings.Repeat("v", 60<<10) // under max_message_bytes (64 KiB)
			for i := range tc.attackers {
				a := n.dial(t, "")
				join(t, a, live, "")
				for j := range maxOffersFromOne {
					send(t, a, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: victim,
						OfferID: string(rune('a'+i)) + string(rune('a'+j)), SDP: sdp})
				}
			}
			offers := 0
			for {
				f, err := ws.ReadFrame(frames)
				if err != nil {
					t.Fatalf("after %d offers the connection ended without a close frame: %v", offers, err)
				}
				if f.Header.OpCode == ws.OpClose {
					code, reason := ws.ParseCloseFrameData(f.Payload)
					if code != ws.StatusPolicyViolation {
						t.Fatalf("close %d %q, want 1008", code, reason)
					}
					t.Logf("closed after %d whole offers: %d %q", offers, code, reason)
					break
				}
				if _, err := signaling.Decode(f.Payload); err != nil {
					t.Fatalf("frame %d is not a whole message: %v", offers, err)
				}
				offers++
			}
			if got := testutil.ToFloat64(srv.m.rejects.WithLabelValues("slow_consumer")); got != 1 {
				t.Fatalf("slow_consumer rejects = %v, want 1", got)
			}
		})
	}
}

// smallSendBuffers gives accepted connections a small kernel send buffer,
// so that a slow reader holds up the tracker's writes within a test's
// seconds rather than after megabytes.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return nc, err
}

// TestFloodersAreBoxed: an address whose connections are closed for
// strikes penaltyFree times is refused (429, Retry-After) before the
// upgrade for a while, rather than costing an upgrade per redial; one
// strike close is not enough, so an office with one misbehaving browser is
// never refused.
func TestFloodersAreBoxed(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MessagesPerSecond, c.MessageBurst, c.MaxStrikes = 1, 5, 10 })
	flood := func() {
		c := n.dialRaw(t, "/ws")
		for range 40 {
			c.send(ws.OpPing, true, true, []byte("p"))
		}
		if code := c.expectClose(); code != ws.StatusPolicyViolation {
			t.Fatalf("closed with %d, want 1008", code)
		}
	}
	for i := range penaltyFree {
		flood()
		if i < penaltyFree-1 {
			// Not boxed yet: an honest client still gets in.
			n.dial(t, "")
		}
	}
	resp, err := http.Get(n.hs.URL + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after %d strike closes: %s, Retry-After %q; want 429 with Retry-After", penaltyFree, resp.Status, resp.Header.Get("Retry-After"))
	}
	if got := testutil.ToFloat64(n.srv.m.rejects.WithLabelValues("ip_penalty")); got != 1 {
		t.Fatalf("ip_penalty rejects = %v, want 1", got)
	}
}

// The box forgives: refused for 1 s after penaltyFree closes, doubling per
// further close up to penaltyMax, and one close per penaltyForgive
// forgiven.
func TestPenaltyBoxForgives(t *testing.T) {
	var b penaltyBox
	t0 := time.Unix(1e9, 0)
	for i := range penaltyFree - 1 {
		b.closed("a", t0.Add(time.Duration(i)*time.Millisecond))
	}
	if _, boxed := b.refused("a", t0.Add(time.Second)); boxed {
		t.Fatal("boxed before penaltyFree closes")
	}
	b.closed("a", t0.Add(time.Second))
	if d, boxed := b.refused("a", t0.Add(time.Second)); !boxed || d != time.Second {
		t.Fatalf("after penaltyFree closes: boxed %v for %v, want 1s", boxed, d)
	}
	for range 20 {
		b.closed("a", t0.Add(2*time.Second))
	}
	if d, _ := b.refused("a", t0.Add(2*time.Second)); d != penaltyMax {
		t.Fatalf("after many closes boxed for %v, want penaltyMax", d)
	}
	if _, boxed := b.refused("b", t0); boxed {
		t.Fatal("another address boxed")
	}
	// Long after, everything is forgiven: one more close does not box.
	later := t0.Add(30 * penaltyForgive)
	b.closed("a", later)
	if _, boxed := b.refused("a", later); boxed {
		t.Fatal("boxed again after everything was forgiven")
	}
}
