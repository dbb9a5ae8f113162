package tracker

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/peercdn/peercdn/tracker/wsconn"
)

// rawClient speaks WebSocket frame by frame, to hold the tracker's framing
// to RFC 6455 where the WebSocket libraries' clients would not misbehave.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func (n *testNode) dialRaw(t *testing.T, path string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(n.hs.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" { // RFC 6455's example
		t.Fatalf("Sec-WebSocket-Accept %q", got)
	}
	return &rawClient{t: t, nc: nc, br: br}
}

// send writes one frame; masked as clients must unless told otherwise.
func (c *rawClient) send(op ws.OpCode, fin, masked bool, p []byte) {
	c.t.Helper()
	f := ws.NewFrame(op, fin, bytes.Clone(p))
	if masked {
		f = ws.MaskFrameInPlace(f)
	}
	if err := ws.WriteFrame(c.nc, f); err != nil {
		c.t.Fatal(err)
	}
}

// next reads the tracker's next frame.
func (c *rawClient) next() ws.Frame {
	c.t.Helper()
	f, err := ws.ReadFrame(c.br)
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	if f.Header.Masked {
		c.t.Fatal("server frames must not be masked")
	}
	return f
}

// expectClose reads until a close frame and returns its code; then the
// tracker must close the socket.
func (c *rawClient) expectClose() ws.StatusCode {
	c.t.Helper()
	for {
		f := c.next()
		if f.Header.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(f.Payload)
			return code
		}
	}
}

func (c *rawClient) expectEOF() {
	c.t.Helper()
	if _, err := c.br.ReadByte(); err != io.EOF {
		c.t.Fatalf("after close: %v, want EOF", err)
	}
}

var helloJSON = []byte(`{"type":"hello","v":1}`)

func TestFraming(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxMessageBytes = 4096 })

	t.Run("ping is answered with its payload", func(t *testing.T) {
		c := n.dialRaw(t, "/ws")
		c.send(ws.OpPing, true, true, []byte("are you there"))
		f := c.next()
		if f.Header.OpCode != ws.OpPong || string(f.Payload) != "are you there" {
			t.Fatalf("got %v %q, want a pong with the ping's payload", f.Header.OpCode, f.Payload)
		}
	})

	t.Run("pings past the message rate go unanswered", func(t *testing.T) {
		n := startNode(t, func(c *Config) { c.MessagesPerSecond, c.MessageBurst = 1, 5 })
		c := n.dialRaw(t, "/ws")
		for range 20 {
			c.send(ws.OpPing, true, true, []byte("p"))
		}
		c.send(ws.OpText, true, true, helloJSON) // over the limit too: answered with an error
		pongs := 0
		for {
			f := c.next()
			if f.Header.OpCode != ws.OpPong {
				break
			}
			pongs++
		}
		if pongs != 5 {
			t.Fatalf("%d pongs for 20 pings, want the burst of 5", pongs)
		}
		if got := testutil.ToFloat64(n.srv.m.rejects.WithLabelValues("ping_rate")); got != 15 {
			t.Fatalf("rejects{ping_rate} = %v, want 15", got)
		}
	})

	t.Run("a ping flood is closed for strikes", func(t *testing.T) {
		n := startNode(t, func(c *Config) { c.MessagesPerSecond, c.MessageBurst, c.MaxStrikes = 1, 5, 10 })
		c := n.dialRaw(t, "/ws")
		for range 40 {
			c.send(ws.OpPing, true, true, []byte("p"))
		}
		for {
			f := c.next()
			if f.Header.OpCode == ws.OpClose {
				if code, _ := ws.ParseCloseFrameData(f.Payload); code != ws.StatusPolicyViolation {
					t.Fatalf("closed with %d, want 1008", code)
				}
				return
			}
		}
	})

	t.Run("fragments with a ping between them make one message", func(t *testing.T) {
		c := n.dialRaw(t, "/ws")
		c.send(ws.OpText, false, true, helloJSON[:5])
		c.send(ws.OpPing, true, true, []byte("x"))
		c.send(ws.OpContinuation, false, true, helloJSON[5:10])
		c.send(ws.OpContinuation, true, true, helloJSON[10:])
		if f := c.next(); f.Header.OpCode != ws.OpPong {
			t.Fatalf("first frame %v, want the pong", f.Header.OpCode)
		}
		if f := c.next(); f.Header.OpCode != ws.OpText || !bytes.Contains(f.Payload, []byte(`"welcome"`)) {
			t.Fatalf("got %v %s, want the welcome", f.Header.OpCode, f.Payload)
		}
	})

	t.Run("a client's close is echoed, then the socket closes", func(t *testing.T) {
		c := n.dialRaw(t, "/announce")
		c.send(ws.OpClose, true, true, ws.NewCloseFrameBody(ws.StatusGoingAway, "bye"))
		if code := c.expectClose(); code != ws.StatusGoingAway {
			t.Fatalf("close code %d, want the client's 1001 echoed", code)
		}
		c.expectEOF()
	})

	t.Run("an empty close is answered 1000", func(t *testing.T) {
		c := n.dialRaw(t, "/ws")
		c.send(ws.OpClose, true, true, nil)
		if code := c.expectClose(); code != ws.StatusNormalClosure {
			t.Fatalf("close code %d, want 1000", code)
		}
		c.expectEOF()
	})

	t.Run("an application's close code is echoed", func(t *testing.T) {
		c := n.dialRaw(t, "/ws")
		c.send(ws.OpClose, true, true, ws.NewCloseFrameBody(4321, "app"))
		if code := c.expectClose(); code != 4321 {
			t.Fatalf("close code %d, want 4321", code)
		}
		c.expectEOF()
	})

	for _, tc := range []struct {
		name string
		send func(c *rawClient)
		code ws.StatusCode
	}{
		{"an unmasked frame", func(c *rawClient) { c.send(ws.OpText, true, false, helloJSON) }, ws.StatusProtocolError},
		{"a continuation with nothing to continue", func(c *rawClient) { c.send(ws.OpContinuation, true, true, helloJSON) }, ws.StatusProtocolError},
		{"a new message inside a fragmented one", func(c *rawClient) {
			c.send(ws.OpText, false, true, helloJSON[:5])
			c.send(ws.OpText, true, true, helloJSON[5:])
		}, ws.StatusProtocolError},
		{"reserved bits", func(c *rawClient) {
			f := ws.MaskFrameInPlace(ws.NewTextFrame(bytes.Clone(helloJSON))) // masking is in place
			f.Header.Rsv = 4                                                  // compression, never negotiated
			ws.WriteFrame(c.nc, f)
		}, ws.StatusProtocolError},
		{"a fragmented control frame", func(c *rawClient) { c.send(ws.OpPing, false, true, nil) }, ws.StatusProtocolError},
		{"a message over max_message_bytes in fragments", func(c *rawClient) {
			c.send(ws.OpText, false, true, bytes.Repeat([]byte(" "), 3000))
			// The header alone says too much: the tracker must not wait for
			// the payload, which never comes.
			h := ws.Header{OpCode: ws.OpContinuation, Fin: true, Masked: true, Length: 3000}
			ws.WriteHeader(c.nc, h)
		}, ws.StatusMessageTooBig},
		{"a message in endless fragments", func(c *rawClient) {
			c.send(ws.OpText, false, true, helloJSON[:1])
			for range wsconn.MaxFragments {
				c.send(ws.OpContinuation, false, true, nil)
			}
		}, ws.StatusPolicyViolation},
		{"a close frame of one byte", func(c *rawClient) { c.send(ws.OpClose, true, true, []byte{3}) }, ws.StatusProtocolError},
		{"a close with code 1005 (never sent on the wire)", func(c *rawClient) {
			c.send(ws.OpClose, true, true, ws.NewCloseFrameBody(ws.StatusNoStatusRcvd, ""))
		}, ws.StatusProtocolError},
		{"a close with code 999", func(c *rawClient) { c.send(ws.OpClose, true, true, []byte{0x03, 0xe7}) }, ws.StatusProtocolError},
		{"a close with code 2000", func(c *rawClient) { c.send(ws.OpClose, true, true, []byte{0x07, 0xd0}) }, ws.StatusProtocolError},
		{"a close with code 5000", func(c *rawClient) { c.send(ws.OpClose, true, true, []byte{0x13, 0x88}) }, ws.StatusProtocolError},
		{"a close reason that is not UTF-8", func(c *rawClient) {
			c.send(ws.OpClose, true, true, []byte{0x03, 0xe8, 0xff, 0xfe})
		}, ws.StatusInvalidFramePayloadData},
		{"a 2^63-byte header", func(c *rawClient) {
			b := []byte{0x81, 0x80 | 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}
			c.nc.Write(b)
		}, ws.StatusMessageTooBig},
	} {
		t.Run(tc.name+" fails the connection", func(t *testing.T) {
			c := n.dialRaw(t, "/ws")
			tc.send(c)
			if code := c.expectClose(); code != tc.code {
				t.Fatalf("close code %d, want %d", code, tc.code)
			}
			// The close handshake: the tracker waits for ours, then closes.
			c.send(ws.OpClose, true, true, ws.NewCloseFrameBody(tc.code, ""))
			c.expectEOF()
		})
	}
}
