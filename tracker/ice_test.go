package tracker

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/turnserver"
)

// TestWelcomeNamesBuiltInSTUNAndTURN: with the built-in STUN and TURN
// served, a welcome lists stun:HOST:PORT first (HOST the one the viewer
// dialled), then turn: with credentials minted for this viewer, which the
// relay accepts (a real allocation, a real packet relayed and counted);
// another viewer's credentials differ, a tampered password is refused, and
// the operator's own servers follow.
func TestWelcomeNamesBuiltInSTUNAndTURN(t *testing.T) {
	n := startNode(t, func(c *Config) {
		c.TURNSecret = "0123456789abcdef-secret"
		c.ICEServers = []signaling.ICEServer{{URLs: []string{"stun:stun.example.net:3478"}}, {URLs: []string{"turn:coturn.example.net:3478"}}}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stunPC, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { n.srv.ServeSTUN(ctx, stunPC); close(done) }()
	defer func() { cancel(); <-done }()
	turnPC, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	relay, err := n.srv.ServeTURN(turnserver.Config{PacketConn: turnPC, RelayIP: net.IPv4(127, 0, 0, 1), MinPort: 40000, MaxPort: 40999})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	eventually(t, 2*time.Second, "stun port set", func() bool { return n.srv.stunPort.Load() != 0 })

	a, b := n.dial(t, ""), n.dial(t, "")
	wa, wb := a.Welcome(), b.Welcome()
	if len(wa.ICEServers) != 4 {
		t.Fatalf("welcome lists %+v, want built-in STUN, TURN, then the operator's two", wa.ICEServers)
	}
	if want := "stun:" + stunPC.LocalAddr().String(); wa.ICEServers[0].URLs[0] != want {
		t.Fatalf("first ICE server %v, want %s", wa.ICEServers[0].URLs, want)
	}
	tu := wa.ICEServers[1]
	if want := "turn:" + turnPC.LocalAddr().String() + "?transport=udp"; tu.URLs[0] != want || tu.Username == "" {
		t.Fatalf("second ICE server %+v, want %s with credentials", tu, want)
	}
	if !strings.HasSuffix(tu.Username, ":"+wa.PeerID) || tu.Username == wb.ICEServers[1].Username {
		t.Fatalf("credentials %q are not this viewer's (%s)", tu.Username, wa.PeerID)
	}
	if op := wa.ICEServers[3]; op.URLs[0] != "turn:coturn.example.net:3478" || op.Username == "" || op.Credential == "" {
		t.Fatalf("operator's TURN without a username got no minted credentials: %+v", op)
	}
	if wa.ICEServers[2].Username != "" {
		t.Fatal("a STUN server got credentials")
	}

	allocate := func(user, pass string) (net.PacketConn, *turn.Client, error) {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		c, err := turn.NewClient(&turn.ClientConfig{TURNServerAddr: turnPC.LocalAddr().String(),
			STUNServerAddr: turnPC.LocalAddr().String(), Username: user, Password: pass, Realm: "peercdn", Conn: pc})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		if err := c.Listen(); err != nil {
			t.Fatal(err)
		}
		r, err := c.Allocate()
		return r, c, err
	}
	if _, _, err := allocate(tu.Username, tu.Credential+"x"); err == nil {
		t.Fatal("a tampered credential was accepted")
	}
	r, _, err := allocate(tu.Username, tu.Credential)
	if err != nil {
		t.Fatalf("allocate with the welcome's credentials: %v", err)
	}
	defer r.Close()
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := r.WriteTo([]byte("through the relay"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 100)
	m, _, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:m]) != "through the relay" {
		t.Fatalf("relayed: %q %v", buf[:m], err)
	}
	// The relay counts after its write returns, which can be after the peer
	// has read the packet.
	eventually(t, 2*time.Second, "relayed bytes counted", func() bool {
		return testutil.ToFloat64(n.srv.m.turnBytes) >= float64(m)
	})
	if got := testutil.ToFloat64(n.srv.m.turnAllocations); got != 1 {
		t.Fatalf("allocations counted %v, want 1", got)
	}
}

// A Host header that is not a plain host is not reflected into ICE servers.
func TestRequestHost(t *testing.T) {
	for in, want := range map[string]string{
		"tracker.example.com:8080": "tracker.example.com",
		"tracker.example.com":      "tracker.example.com",
		"[2001:db8::1]:443":        "2001:db8::1",
		"192.0.2.4":                "192.0.2.4",
		"evil.com?transport=tcp":   "",
		"a b":                      "",
		"":                         "",
	} {
		if got := requestHost(in); got != want {
			t.Errorf("requestHost(%q) = %q, want %q", in, got, want)
		}
	}
}
