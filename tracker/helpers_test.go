package tracker

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peercdn/peercdn/signaling"
)

// testNode is a real tracker on a loopback httptest server.
type testNode struct {
	srv *Server
	hs  *httptest.Server
	url string // ws://.../ws
}

func startNode(t testing.TB, mutate func(*Config)) *testNode {
	t.Helper()
	return serveNode(t, newTestServer(t, mutate))
}

// newTestServer builds a tracker on 127.0.0.1 whose configuration mutate
// adjusts.
func newTestServer(t testing.TB, mutate func(*Config)) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// serveNode serves srv on a loopback httptest server, drained and closed
// at the end of the test.
func serveNode(t testing.TB, srv *Server) *testNode {
	t.Helper()
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Drain(ctx)
		hs.Close()
		srv.Close()
	})
	return &testNode{srv: srv, hs: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
}

// client is a signaling.Client with a reader goroutine, so tests can wait
// for a message with a timeout without cancelling a Read (which would close
// the WebSocket).
type client struct {
	*signaling.Client
	in     chan *signaling.Message
	closed chan struct{}
	err    error // why reading ended; valid once closed is closed
}

func (n *testNode) dial(t testing.TB, origin string) *client {
	t.Helper()
	return n.dialWith(t, &signaling.DialOptions{Origin: origin})
}

func (n *testNode) dialWith(t testing.TB, opts *signaling.DialOptions) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := signaling.Dial(ctx, n.url, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	tc := &client{Client: c, in: make(chan *signaling.Message, 1024), closed: make(chan struct{})}
	go func() {
		defer close(tc.closed)
		for {
			m, err := c.Recv(context.Background())
			if err != nil {
				tc.err = err
				return
			}
			tc.in <- m
		}
	}()
	t.Cleanup(func() {
		c.CloseNow()
		<-tc.closed
	})
	return tc
}

// rawDial opens a WebSocket without the hello, for protocol-violation tests.
func (n *testNode) rawDial(t testing.TB) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, n.url, nil)
	if err != nil {
		t.Fatalf("raw dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func recv(t testing.TB, c *client) *signaling.Message {
	t.Helper()
	select {
	case m := <-c.in:
		return m
	case <-c.closed:
		select {
		case m := <-c.in:
			return m
		default:
		}
		t.Fatalf("recv: connection ended: %v", c.err)
	case <-time.After(5 * time.Second):
		t.Fatal("recv: nothing within 5s")
	}
	return nil
}

// expect reads the next message and checks its type (and error code).
func expect(t testing.TB, c *client, typ signaling.Type, code signaling.Code) *signaling.Message {
	t.Helper()
	m := recv(t, c)
	if m.Type != typ || m.Code != code {
		t.Fatalf("got %s %s (%s), want %s %s", m.Type, m.Code, m.Text, typ, code)
	}
	return m
}

// expectNothing checks that no message arrives within d.
func expectNothing(t testing.TB, c *client, d time.Duration) {
	t.Helper()
	select {
	case m := <-c.in:
		t.Fatalf("unexpected %s from %s: %+v", m.Type, m.From, m)
	case <-time.After(d):
	}
}

// drain returns the messages that arrive until none has for quiet.
func drain(c *client, quiet time.Duration) []*signaling.Message {
	var ms []*signaling.Message
	for {
		select {
		case m := <-c.in:
			ms = append(ms, m)
		case <-time.After(quiet):
			return ms
		}
	}
}

// expectClose waits until the connection ends and returns the close code.
func expectClose(t testing.TB, c *client, within time.Duration) int {
	t.Helper()
	select {
	case <-c.closed:
		return signaling.CloseStatus(c.err)
	case <-time.After(within):
		t.Fatalf("connection still open after %v", within)
	}
	return 0
}

func join(t testing.TB, c *client, sw signaling.Swarm, token string) *signaling.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Join(ctx, sw, token, 4); err != nil {
		t.Fatal(err)
	}
	return recv(t, c)
}

func send(t testing.TB, c *client, m *signaling.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Send(ctx, m); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }
