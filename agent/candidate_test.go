package agent

import (
	"net"
	"testing"
	"time"

	"github.com/peercdn/peercdn/signaling"
)

func TestIsTCPCandidate(t *testing.T) {
	for c, want := range map[string]bool{
		"candidate:1467250027 1 udp 2122260223 192.0.2.10 46243 typ host generation 0":                         false,
		"candidate:1467250027 1 tcp 1518280447 192.0.2.10 9 typ host tcptype active generation 0":              true,
		"a=candidate:2 1 TCP 1518280447 3f1c1f0e-7c0a-4d6b-9d8e-2b4f0c6a7e11.local 9 typ host tcptype passive": true,
		"candidate:842163049 1 udp 1677729535 203.0.113.7 61421 typ srflx raddr 0.0.0.0 rport 0 generation 0":  false,
		"candidate:3 1 udp 41885439 198.51.100.4 3478 typ relay raddr 203.0.113.7 rport 61421 generation 0":    false,
		"": false,
	} {
		if got := isTCPCandidate(c); got != want {
			t.Errorf("isTCPCandidate(%q) = %v, want %v", c, got, want)
		}
	}
}

// TestCandidatesRideInTheDescription: two viewers connect with their
// candidates in the offer and the answer, none sent on its own (before:
// each candidate a message through the tracker and a call on the other
// side). With a STUN server that never answers, gathering does not end:
// the descriptions go out after gatherWait with the host candidates, and
// the viewers still connect.
func TestCandidatesRideInTheDescription(t *testing.T) {
	for _, tc := range []struct {
		name    string
		servers func(t *testing.T) []signaling.ICEServer
	}{
		{"no STUN", func(*testing.T) []signaling.ICEServer { return nil }},
		{"a STUN server that never answers", func(t *testing.T) []signaling.ICEServer {
			silent, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { silent.Close() })
			return []signaling.ICEServer{{URLs: []string{"stun:" + silent.LocalAddr().String()}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := startTracker(t)
			servers := tc.servers(t)
			mutate := func(c *Config) { c.ICEServers = servers }
			a, b := startAgent(t, tr, mutate), startAgent(t, tr, mutate)
			start := time.Now()
			waitPeers(t, 1, a, b)
			t.Logf("connected in %v; candidates trickled: %d and %d", time.Since(start).Round(time.Millisecond), a.stats.trickled.Load(), b.stats.trickled.Load())
			if n := a.stats.trickled.Load() + b.stats.trickled.Load(); servers == nil && n != 0 {
				t.Errorf("%d candidates went on their own; want every one in the descriptions", n)
			}
		})
	}
}

// TestWithoutTCPCandidates: the TCP candidates of a description are
// dropped, the rest kept as they were.
func TestWithoutTCPCandidates(t *testing.T) {
	sdp := "v=0\r\na=candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host\r\n" +
		"a=candidate:2 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active\r\n" +
		"a=candidate:3 1 UDP 1686052607 203.0.113.5 54321 typ srflx raddr 192.0.2.1 rport 54321\r\na=end-of-candidates\r\n"
	want := "v=0\r\na=candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host\r\n" +
		"a=candidate:3 1 UDP 1686052607 203.0.113.5 54321 typ srflx raddr 192.0.2.1 rport 54321\r\na=end-of-candidates\r\n"
	if got := withoutTCPCandidates(sdp); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}
