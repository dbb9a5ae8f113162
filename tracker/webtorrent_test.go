package tracker

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// wtClient speaks the WebTorrent tracker protocol over a raw WebSocket.
type wtClient struct {
	t  *testing.T
	ws *websocket.Conn
	in chan map[string]any
}

func (n *testNode) wtDial(t *testing.T) *wtClient { return n.wtDialWith(t, nil) }

// wtDialWith dials with extra request headers.
func (n *testNode) wtDialWith(t *testing.T, h http.Header) *wtClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, strings.Replace(n.url, "/ws", "/announce", 1), &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
	c := &wtClient{t: t, ws: ws, in: make(chan map[string]any, 64)}
	go func() {
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				close(c.in)
				return
			}
			var m map[string]any
			json.Unmarshal(b, &m)
			c.in <- m
		}
	}()
	t.Cleanup(func() { ws.CloseNow() })
	return c
}

func (c *wtClient) send(m map[string]any) {
	c.t.Helper()
	b, _ := json.Marshal(m)
	if err := c.ws.Write(context.Background(), websocket.MessageText, b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wtClient) next() map[string]any {
	c.t.Helper()
	select {
	case m, ok := <-c.in:
		if !ok {
			c.t.Fatal("connection closed")
		}
		return m
	case <-time.After(5 * time.Second):
		c.t.Fatal("nothing within 5 s")
	}
	return nil
}

func (c *wtClient) quiet(d time.Duration) {
	c.t.Helper()
	select {
	case m := <-c.in:
		c.t.Fatalf("unexpected %v", m)
	case <-time.After(d):
	}
}

// id20 makes a 20-byte id, as clients do.
func id20(s string) string { return (s + strings.Repeat("-", 20))[:20] }

// TestWebTorrentAnnounce: two clients of one info_hash exchange an offer
// and an answer through /announce; each offer goes to a distinct peer; an
// answer from anyone but the peer an offer went to is refused; a peer_id
// cannot be taken over from another socket; scrape counts peers.
func TestWebTorrentAnnounce(t *testing.T) {
	n := startNode(t, nil)
	ih := id20("infohash")
	a, b, c := n.wtDial(t), n.wtDial(t), n.wtDial(t)
	a.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("peer-a"), "numwant": 5,
		"event": "started", "offers": []any{}})
	if r := a.next(); r["action"] != "announce" || r["incomplete"] != 1.0 || r["interval"] == nil {
		t.Fatalf("announce response %v", r)
	}
	offers := []any{
		map[string]any{"offer": map[string]any{"type": "offer", "sdp": "v=0 b1"}, "offer_id": id20("offer-1")},
		map[string]any{"offer": map[string]any{"type": "offer", "sdp": "v=0 b2"}, "offer_id": id20("offer-2")},
	}
	b.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("peer-b"), "numwant": 5,
		"event": "started", "offers": offers})
	if r := b.next(); r["incomplete"] != 2.0 {
		t.Fatalf("b's announce response %v", r)
	}
	// One other peer: one offer handed out, to a.
	got := a.next()
	if got["peer_id"] != id20("peer-b") || got["offer_id"] != id20("offer-1") || got["info_hash"] != ih {
		t.Fatalf("a got %v", got)
	}
	a.quiet(200 * time.Millisecond)

	// c joins and forges a's answer: dropped, counted, not relayed.
	c.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("peer-c"), "offers": []any{}})
	c.next()
	c.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("peer-c"), "to_peer_id": id20("peer-b"),
		"offer_id": id20("offer-1"), "answer": map[string]any{"type": "answer", "sdp": "forged"}})
	b.quiet(200 * time.Millisecond)
	c.quiet(0)
	// c claims a's peer_id: refused.
	c.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("peer-a"), "offers": []any{}})
	if r := c.next(); r["failure reason"] == nil {
		t.Fatalf("peer_id takeover accepted: %v", r)
	}

	a.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("peer-a"), "to_peer_id": id20("peer-b"),
		"offer_id": id20("offer-1"), "answer": map[string]any{"type": "answer", "sdp": "v=0 a"}})
	ans := b.next()
	if ans["peer_id"] != id20("peer-a") || ans["offer_id"] != id20("offer-1") || ans["answer"].(map[string]any)["sdp"] != "v=0 a" {
		t.Fatalf("b got %v", ans)
	}
	// The same answer again: the offer is used up.
	a.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("peer-a"), "to_peer_id": id20("peer-b"),
		"offer_id": id20("offer-1"), "answer": map[string]any{"type": "answer", "sdp": "v=0 a"}})
	b.quiet(200 * time.Millisecond)
	if got := testutil.ToFloat64(n.srv.m.rejects.WithLabelValues("wt_unknown_offer")); got != 2 {
		t.Fatalf("wt_unknown_offer rejects = %v, want 2 (the forged and the repeated answer)", got)
	}

	a.send(map[string]any{"action": "scrape", "info_hash": []string{ih}})
	sc := a.next()
	f := sc["files"].(map[string]any)[ih].(map[string]any)
	if f["incomplete"] != 3.0 {
		t.Fatalf("scrape %v", sc)
	}
	b.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("peer-b"), "event": "stopped"})
	eventually(t, 2*time.Second, "b left the swarm", func() bool {
		n.srv.wt.mu.Lock()
		defer n.srv.wt.mu.Unlock()
		sw := n.srv.wt.swarms[wtKey{"", ih}]
		return sw != nil && len(sw.list) == 2
	})
	a.ws.CloseNow()
	c.ws.CloseNow()
	eventually(t, 2*time.Second, "swarm and offers gone", func() bool {
		s, _ := n.srv.wt.counts()
		return s == 0
	})
}

// TestWebTorrentRejectsGarbage: malformed ids and actions get a failure
// reason and count as strikes.
func TestWebTorrentRejectsGarbage(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxStrikes = 3 })
	a := n.wtDial(t)
	a.send(map[string]any{"action": "announce", "info_hash": "short", "peer_id": id20("p")})
	if r := a.next(); r["failure reason"] == nil {
		t.Fatalf("short info_hash accepted: %v", r)
	}
	a.send(map[string]any{"action": "dance"})
	a.next()
	a.send(map[string]any{"action": "dance"})
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-a.in:
			if !ok {
				return // closed after max_strikes
			}
		case <-deadline:
			t.Fatal("still open after max_strikes bad messages")
		}
	}
}

// A WebTorrent client cannot ping: after its first announce its socket
// lives as long as two missed announces, not the handshake timeout.
func TestWebTorrentSocketOutlivesHandshakeTimeout(t *testing.T) {
	n := startNode(t, func(c *Config) {
		c.HandshakeTimeout = 200 * time.Millisecond
		c.IdleTimeout = time.Second
		c.AnnounceInterval = time.Second // closed after 2.5 s of silence
	})
	a := n.wtDial(t)
	a.send(map[string]any{"action": "announce", "info_hash": id20("ih"), "peer_id": id20("peer-a"), "numwant": 0})
	if r := a.next(); r["interval"] != 1.0 {
		t.Fatalf("announce response %v, want interval 1", r)
	}
	a.quiet(time.Second) // well past the handshake timeout: still open
	select {
	case _, ok := <-a.in:
		if ok {
			t.Fatal("unexpected message")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("still open 4 s after the last announce: idle timeout not applied")
	}
}
