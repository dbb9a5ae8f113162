package tracker

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
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
