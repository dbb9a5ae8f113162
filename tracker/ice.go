package tracker

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/stunserver"
	"github.com/peercdn/peercdn/tracker/turnserver"
)

// ServeSTUN answers STUN binding requests on pc until ctx ends, and from
// now on hands every viewer stun:HOST:PORT first among its ICE servers
// (HOST: public_host, or the host the viewer reached the tracker at).
func (s *Server) ServeSTUN(ctx context.Context, pc net.PacketConn) error {
	s.stunPort.Store(int32(pc.LocalAddr().(*net.UDPAddr).Port))
	defer s.stunPort.Store(0)
	return stunserver.New(pc, stunserver.Limits{}, func(r stunserver.Result) {
		s.m.stun.WithLabelValues(string(r)).Inc()
	}).Serve(ctx)
}

// ServeTURN runs the embedded TURN relay on cfg.PacketConn, with this
// tracker's turn_secret, and hands every viewer turn:HOST:PORT with
// credentials of its own. Close the returned relay to stop it.
func (s *Server) ServeTURN(cfg turnserver.Config) (*turnserver.Server, error) {
	cfg.Secret = s.cfg.TURNSecret
	cfg.Relayed = func(n int) { s.m.turnBytes.Add(float64(n)) }
	cfg.Allocated = func() { s.m.turnAllocations.Inc() }
	t, err := turnserver.New(cfg)
	if err != nil {
		return nil, err
	}
	s.turnPort.Store(int32(cfg.PacketConn.LocalAddr().(*net.UDPAddr).Port))
	return t, nil
}

// iceServers is what one viewer's welcome lists: the built-in STUN, the
// built-in TURN with credentials minted for this viewer, then the
// operator's ice_servers (turn: ones without a username get minted
// credentials too).
func (c *conn) iceServers(peerID string) []signaling.ICEServer {
	cfg := &c.s.cfg
	stunPort, turnPort := int(c.s.stunPort.Load()), int(c.s.turnPort.Load())
	if stunPort == 0 && turnPort == 0 && cfg.TURNSecret == "" {
		return cfg.ICEServers
	}
	host := cfg.PublicHost
	if host == "" {
		host = c.host
	}
	out := make([]signaling.ICEServer, 0, len(cfg.ICEServers)+2)
	if host != "" && stunPort != 0 {
		out = append(out, signaling.ICEServer{URLs: []string{"stun:" + hostPort(host, stunPort)}})
	}
	if host != "" && turnPort != 0 {
		u, p := turnserver.Credentials(cfg.TURNSecret, peerID, cfg.TURNCredentialTTL)
		out = append(out, signaling.ICEServer{URLs: []string{"turn:" + hostPort(host, turnPort) + "?transport=udp"},
			Username: u, Credential: p})
	}
	for _, is := range cfg.ICEServers {
		if is.Username == "" && cfg.TURNSecret != "" && isTURN(is) {
			is.Username, is.Credential = turnserver.Credentials(cfg.TURNSecret, peerID, cfg.TURNCredentialTTL)
		}
		out = append(out, is)
	}
	return out
}

func isTURN(is signaling.ICEServer) bool {
	for _, u := range is.URLs {
		if strings.HasPrefix(u, "turn:") || strings.HasPrefix(u, "turns:") {
			return true
		}
	}
	return false
}

func hostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// requestHost is the host part of a Host header, if it is a plain host
// name or IP address; anything else is ignored rather than reflected into
// a viewer's ICE servers.
func requestHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if !validHost(h) {
		return ""
	}
	return h
}

// validHost: an IP address, or a DNS name of letters, digits, hyphens and
// dots.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}
