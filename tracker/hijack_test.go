package tracker

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// A client may send its first frame in the same packet as the upgrade
// request; those bytes sit in net/http's buffer when the WebSocket takes
// the connection over, and must not be lost.
func TestFrameSentWithUpgradeIsRead(t *testing.T) {
	n := startNode(t, nil)
	for _, size := range []int{1, 64, 3000, 5000} { // under and over readBufSize
		nc, err := net.Dial("tcp", strings.TrimPrefix(n.hs.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		hello := []byte(`{"type":"hello","v":1}`)
		// A second frame after hello makes the buffered tail larger.
		pad := maskedText(bytes.Repeat([]byte(" "), max(size-len(hello), 0)))
		req := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
		// hello first: the tracker closes on anything else first.
		payload := append([]byte(req), maskedText(hello)...)
		if size > 1 {
			payload = append(payload, pad...)
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write(payload); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(nc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("size %d: upgrade: %v %v", size, resp, err)
		}
		hdr := make([]byte, 2)
		if _, err := br.Read(hdr); err != nil {
			t.Fatalf("size %d: read: %v", size, err)
		}
		if hdr[0] != 0x81 { // FIN + text: the welcome, not a close frame
			t.Fatalf("size %d: first frame byte %#x, want a text frame (welcome)", size, hdr[0])
		}
		nc.Close()
	}
}

// maskedText is a client-to-server text frame.
func maskedText(p []byte) []byte {
	b := []byte{0x81}
	switch {
	case len(p) < 126:
		b = append(b, 0x80|byte(len(p)))
	default:
		b = append(b, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	b = append(b, 0, 0, 0, 0) // a zero mask leaves the payload as is
	return append(b, p...)
}

// Connections the tracker closes from outside their own goroutine (here:
// at the drain deadline) while their clients keep sending and answer the
// close late: every one still ends. The library then reads each client's
// close reply on the writer's goroutine while the poller wakes the
// connection's own for the bytes that keep coming; a CI run under -race
// once caught the connection peeking at its read buffer in that window
// (batchWriter.closeRead closes it). This test exercises the window; it
// did not reproduce that race in 30 runs here.
func TestCloseHandshakeWhileClientSends(t *testing.T) {
	n := startNode(t, func(c *Config) {
		// The drain closes them, not strikes for their rate (which would
		// soon have the address refused as a flooder).
		c.MessagesPerSecond, c.MessageBurst = 1e6, 1e6
		c.IPMessagesPerSecond, c.IPMessageBurst = 1e6, 1e6
	})
	url := strings.Replace(n.url, "/ws", "/announce", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 20 {
		ws, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		wg.Add(1)
		go func() { // reading answers the tracker's close frame: late, so
			// the tracker waits for the reply while bytes keep coming
			defer wg.Done()
			time.Sleep(500 * time.Millisecond)
			for {
				if _, _, err := ws.Read(ctx); err != nil {
					return
				}
			}
		}()
		go func() {
			msg := []byte(`{"action":"announce","info_hash":"` + fmt.Sprintf("%020d", i) + `","peer_id":"` + fmt.Sprintf("p%019d", i) + `","offers":[]}`)
			for ws.Write(ctx, websocket.MessageText, msg) == nil {
				time.Sleep(100 * time.Microsecond)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer dcancel()
	n.srv.Drain(dctx)
	wg.Wait() // every client saw its connection end
	if ctx.Err() != nil {
		t.Fatal("the tracker did not close every connection")
	}
}
