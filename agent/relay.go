package agent

import (
	"strings"

	"github.com/peercdn/peercdn/signaling"
)

// Segments go over TURN relays only where allowed (Config.AllowRelay or the
// tracker's allow_relay): a relayed segment costs the TURN server its bytes
// in and out to save the CDN one copy, so by default the agent neither
// gathers relay candidates (it drops turn: servers) nor accepts a peer's.

// withoutTURN returns servers without their turn: and turns: URLs.
func withoutTURN(servers []signaling.ICEServer) []signaling.ICEServer {
	var out []signaling.ICEServer
	for _, s := range servers {
		var urls []string
		for _, u := range s.URLs {
			if !isTURN(u) {
				urls = append(urls, u)
			}
		}
		if len(urls) > 0 {
			out = append(out, signaling.ICEServer{URLs: urls}) // STUN needs no credentials
		}
	}
	return out
}

func isTURN(url string) bool {
	scheme, _, _ := strings.Cut(url, ":")
	scheme = strings.ToLower(scheme)
	return scheme == "turn" || scheme == "turns"
}

// isRelayCandidate reports whether an ICE candidate ("candidate:… typ
// relay …", with or without "a=") is a TURN relay's.
func isRelayCandidate(c string) bool {
	f := strings.Fields(c)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "typ" {
			return f[i+1] == "relay"
		}
	}
	return false
}

// withoutRelayCandidates drops the relay candidates an SDP carries.
func withoutRelayCandidates(sdp string) string {
	if !strings.Contains(sdp, " relay") {
		return sdp
	}
	lines := strings.SplitAfter(sdp, "\n")
	out := lines[:0]
	for _, l := range lines {
		if strings.HasPrefix(l, "a=candidate:") && isRelayCandidate(l) {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}

// relayAllowed reports whether this session may use TURN relays.
func (a *Agent) relayAllowed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.relay
}
