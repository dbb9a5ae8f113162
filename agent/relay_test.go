//go:build !js

package agent

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker"
)

// startTURN runs a real TURN server (pion/turn) on loopback and counts the
// relay allocations made on it.
func startTURN(t *testing.T) (server signaling.ICEServer, allocations *atomic.Int64) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const realm, user, pass = "peercdn.test", "viewer", "secret"
	key := turn.GenerateAuthKey(user, realm, pass)
	allocations = new(atomic.Int64)
	s, err := turn.NewServer(turn.ServerConfig{
		Realm: realm,
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			return ra.Username, key, ra.Username == user
		},
		EventHandler: turn.EventHandler{
			OnAllocationCreated: func(_, _ net.Addr, _, _, _ string, _ net.Addr, _ int) { allocations.Add(1) },
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn:            pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return signaling.ICEServer{URLs: []string{"turn:" + pc.LocalAddr().String() + "?transport=udp"}, Username: user, Credential: pass}, allocations
}

// TestRelayOnlyWhenAllowed: two agents that can reach each other only
// through a TURN relay (ICE policy "relay") stay unconnected by default, and
// the segment comes from the CDN with no allocation on the TURN server;
// allowed by the agent's config or by the tracker's allow_relay, they
// connect through it and the segment travels between them.
func TestRelayOnlyWhenAllowed(t *testing.T) {
	for _, tc := range []struct {
		name           string
		agent, tracker bool // who allows relays
	}{
		{"default", false, false},
		{"agent allows", true, false},
		{"tracker allows", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			turnServer, allocations := startTURN(t)
			o := startOrigin(t)
			tr := startTrackerWith(t, func(c *tracker.Config) {
				c.ICEServers = []signaling.ICEServer{turnServer}
				c.AllowRelay = tc.tracker
			})
			mutate := func(c *Config) {
				c.relayOnly = true
				c.AllowRelay = tc.agent
			}
			a, b := startAgent(t, tr, mutate), startAgent(t, tr, mutate)
			allowed := tc.agent || tc.tracker
			if !allowed {
				a.Join(testSwarm)
				b.Join(testSwarm)
				time.Sleep(3 * time.Second) // ample for loopback ICE (the allowed cases take well under 1 s)
				if p := a.Stats().Peers + b.Stats().Peers; p != 0 {
					t.Fatalf("%d peers connected with relays off", p)
				}
			} else {
				// Relayed ICE takes about 50 ms here (2.1 s while pion held
				// relayed pairs back for direct ones that relay-only agents
				// never have); the margin is for the race detector on 2
				// loaded cores, where an attempt may fail (8 s connect
				// timeout) and be retried after the 30 s an unreachable
				// peer is left alone (unreachableWait).
				waitPeersWithin(t, 50*time.Second, 1, a, b)
			}
			if _, err := a.Load(context.Background(), req(o, 1, 0)); err != nil {
				t.Fatal(err)
			}
			if allowed {
				waitHolds(t, b, req(o, 1, 0))
			}
			r, err := b.Load(context.Background(), req(o, 1, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			n := allocations.Load()
			t.Logf("segment from %s; %d TURN allocations", r.Source, n)
			switch {
			case !allowed && (n != 0 || r.Source != SourceCDN):
				t.Fatalf("relays off: %d allocations, segment from %s; want 0 and the CDN", n, r.Source)
			case allowed && (n == 0 || r.Source != SourceP2P):
				t.Fatalf("relays allowed: %d allocations, segment from %s; want some and a peer", n, r.Source)
			}
		})
	}
}

func TestRelayFilters(t *testing.T) {
	in := []signaling.ICEServer{
		{URLs: []string{"stun:s.example:3478", "turn:t.example:3478"}, Username: "u", Credential: "c"},
		{URLs: []string{"TURNS:t.example:5349?transport=tcp"}, Username: "u", Credential: "c"},
	}
	out := withoutTURN(in)
	if len(out) != 1 || len(out[0].URLs) != 1 || out[0].URLs[0] != "stun:s.example:3478" || out[0].Credential != "" {
		t.Fatalf("withoutTURN = %+v", out)
	}
	for c, want := range map[string]bool{
		"candidate:1 1 udp 2122260223 10.0.0.2 5000 typ host":                                  false,
		"candidate:2 1 udp 16777215 203.0.113.9 61000 typ relay raddr 198.51.100.4 rport 5000": true,
		"a=candidate:3 1 udp 1686052607 198.51.100.4 5000 typ srflx raddr 10.0.0.2 rport 5000": false,
		"candidate:4 1 udp 16777215 relay.example 61000 typ host generation 0":                 false,
		"": false,
	} {
		if got := isRelayCandidate(c); got != want {
			t.Errorf("isRelayCandidate(%q) = %v", c, got)
		}
	}
	sdp := "v=0\r\na=candidate:1 1 udp 2122260223 10.0.0.2 5000 typ host\r\na=candidate:2 1 udp 16777215 203.0.113.9 61000 typ relay raddr 0.0.0.0 rport 0\r\na=end-of-candidates\r\n"
	want := "v=0\r\na=candidate:1 1 udp 2122260223 10.0.0.2 5000 typ host\r\na=end-of-candidates\r\n"
	if got := withoutRelayCandidates(sdp); got != want {
		t.Fatalf("withoutRelayCandidates:\n%q\nwant\n%q", got, want)
	}
}

// TestUnreachablePeerIsLeftAlone: two agents whose connection can never open
// (relay-only without a relay: as two viewers behind symmetric NATs) fail
// once, and then neither dials nor accepts the other again for a while,
// although the tracker keeps suggesting it every top-up.
func TestUnreachablePeerIsLeftAlone(t *testing.T) {
	tr := startTrackerWith(t, nil)
	mutate := func(c *Config) {
		c.relayOnly = true
		c.connectTimeout = time.Second
	}
	a, b := startAgent(t, tr, mutate), startAgent(t, tr, mutate)
	a.Join(testSwarm)
	b.Join(testSwarm)
	deadline := time.Now().Add(20 * time.Second)
	for a.Stats().PeersFailed+b.Stats().PeersFailed == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if a.Stats().PeersFailed+b.Stats().PeersFailed == 0 {
		t.Fatal("the connection never failed")
	}
	// One attempt is two peer connections, or three when both dialled at
	// once (the larger id drops its own offer for the other's): count what
	// the attempt created, then that nothing more was.
	time.Sleep(500 * time.Millisecond)
	first := a.Stats().PeerConnections + b.Stats().PeerConnections
	if first > 3 {
		t.Fatalf("%d peer connections created by the first attempt, want 2 (3 with both dialling at once)", first)
	}
	// Three top-ups (every 5 s) would each dial again.
	time.Sleep(16 * time.Second)
	sa, sb := a.Stats(), b.Stats()
	t.Logf("a: %d connections, %d failed; b: %d connections, %d failed; %d after the first failure", sa.PeerConnections, sa.PeersFailed, sb.PeerConnections, sb.PeersFailed, first)
	if n := sa.PeerConnections + sb.PeerConnections; n > first {
		t.Fatalf("%d peer connections created for one unreachable pair, %d by its first attempt: it was dialled again", n, first)
	}
}
