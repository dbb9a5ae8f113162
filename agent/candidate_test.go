package agent

import "testing"

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
