package tracker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// FuzzWebTorrentMessage sends arbitrary frames to /announce over a real
// WebSocket, from a socket that shares a swarm with another, and checks
// that the node survives each (a panic in its handler ends the process)
// and still answers a scrape on the same socket afterwards.
func FuzzWebTorrentMessage(f *testing.F) {
	ih, pa, pb := id20("fuzz-infohash"), id20("fuzz-peer-a"), id20("fuzz-peer-b")
	for _, s := range []string{
		`{"action":"announce","info_hash":"` + ih + `","peer_id":"` + pa + `","numwant":5,"offers":[{"offer_id":"` + id20("o1") + `","offer":{"type":"offer","sdp":"v=0"}}]}`,
		`{"action":"announce","info_hash":"` + ih + `","peer_id":"` + pa + `","to_peer_id":"` + pb + `","offer_id":"` + id20("o1") + `","answer":{"type":"answer","sdp":"v=0"}}`,
		`{"action":"announce","info_hash":"` + ih + `","peer_id":"` + pa + `","event":"stopped"}`,
		`{"action":"announce","info_hash":"` + ih + `","peer_id":"` + pa + `","event":"completed","numwant":-1}`,
		`{"action":"scrape","info_hash":["` + ih + `",1,null]}`,
		`{"action":"announce","info_hash":"\u00ff\u0100xxxxxxxxxxxxxxxxxx","peer_id":[]}`,
		`{"action":"announce","offers":[{"offer":null,"offer_id":null}],"info_hash":"` + ih + `","peer_id":"` + pa + `"}`,
		`{"action":"announce","action":"scrape"}`,
		`not json`, `{}`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	n := startNode(f, func(c *Config) {
		c.MaxStrikes = 1_000_000 // keep the socket: every input goes through one
		c.MessagesPerSecond, c.MessageBurst = 1e6, 1_000_000
		c.IPMessagesPerSecond, c.IPMessageBurst = 1e7, 10_000_000
	})
	url := strings.Replace(n.url, "/ws", "/announce", 1)
	dial := func(t testing.TB, peer string) *websocket.Conn {
		ws, _, err := websocket.Dial(context.Background(), url, nil)
		if err != nil {
			t.Fatal(err)
		}
		ws.SetReadLimit(1 << 20)
		b := `{"action":"announce","info_hash":"` + ih + `","peer_id":"` + peer + `","numwant":0}`
		ws.Write(context.Background(), websocket.MessageText, []byte(b))
		return ws
	}
	other := dial(f, pb) // the swarm's other peer: offers from the fuzzed socket go to it
	otherDone := make(chan struct{})
	go func() {
		defer close(otherDone)
		for {
			if _, _, err := other.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	var ws *websocket.Conn
	f.Cleanup(func() { // before the node's own cleanup
		if ws != nil {
			ws.CloseNow()
		}
		other.CloseNow()
		<-otherDone
	})
	sentinel := id20("sentinel")
	f.Fuzz(func(t *testing.T, b []byte) {
		if ws == nil {
			ws = dial(t, pa)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ws.Write(ctx, websocket.MessageText, b)
		ws.Write(ctx, websocket.MessageText, []byte(`{"action":"scrape","info_hash":"`+sentinel+`"}`))
		for {
			_, m, err := ws.Read(ctx)
			if err != nil {
				if websocket.CloseStatus(err) == -1 && ctx.Err() != nil {
					t.Fatalf("no answer to a scrape after %q", b)
				}
				ws = nil // closed by the node (frame too big): a new socket next time
				return
			}
			if strings.Contains(string(m), sentinel) {
				return
			}
		}
	})
}
