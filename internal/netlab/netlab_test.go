//go:build linux

package netlab

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/peercdn/peercdn/tracker/stunserver"
)

// The lab behaves as the internet does: a home host reaches the internet
// segment from its router's public address, and two homes can punch a hole
// to each other with STUN through port-preserving NATs (with or without the
// firewall, when both send at once) but not through symmetric ones.
func TestLab(t *testing.T) {
	l := New(t)
	inet := l.Internet()
	ln, err := inet.Listen("tcp", Internet+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := inet.ListenPacket("udp4", Internet+":3478")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go stunserver.New(pc, stunserver.Limits{}, nil).Serve(ctx)

	home := l.Household(Home, 1, 0)[0]
	c, err := home.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(s.RemoteAddr().String()); host != "203.0.113.11" {
		t.Fatalf("the internet sees the home at %s, want its router's 203.0.113.11", host)
	}
	s.Close()
	c.Close()

	for _, tc := range []struct {
		nat   NAT
		meets bool
	}{{Home, true}, {Symmetric, false}} {
		a, b := l.Household(tc.nat, 1, 0)[0], l.Household(tc.nat, 1, 0)[0]
		pa, ma := mapped(t, a)
		pb, mb := mapped(t, b)
		// Both send at once, as ICE does, a few times.
		for range 5 {
			pa.WriteTo([]byte("a"), mb)
			pb.WriteTo([]byte("b"), ma)
			time.Sleep(50 * time.Millisecond)
		}
		pb.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 10)
		_, _, err := pb.ReadFrom(buf)
		if got := err == nil; got != tc.meets {
			t.Errorf("%s NATs: packet through %v, want %v (mapped %v and %v)", tc.nat, got, tc.meets, ma, mb)
		}
	}
}

// mapped opens a UDP socket on h and asks the lab's STUN server for its
// public address.
func mapped(t *testing.T, h *Host) (net.PacketConn, net.Addr) {
	pc, err := h.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	srv := &net.UDPAddr{IP: net.ParseIP(Internet), Port: 3478}
	if _, err := pc.WriteTo(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw, srv); err != nil {
		t.Fatal(err)
	}
	pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 200)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("stun from %s: %v", h.NS, err)
	}
	pc.SetReadDeadline(time.Time{})
	m := &stun.Message{Raw: buf[:n]}
	var xa stun.XORMappedAddress
	if err := m.Decode(); err != nil {
		t.Fatal(err)
	}
	if err := xa.GetFrom(m); err != nil {
		t.Fatal(err)
	}
	return pc, &net.UDPAddr{IP: xa.IP, Port: xa.Port}
}
