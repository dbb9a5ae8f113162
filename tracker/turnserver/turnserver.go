// Package turnserver runs the tracker's embedded TURN relay (pion/turn) for
// viewers whose NATs no direct path crosses: credentials are the TURN REST
// API's (coturn's use-auth-secret), minted per viewer in the tracker's
// welcome and expiring; each allocation's relayed bytes are capped per
// second and counted.
package turnserver

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"
	"golang.org/x/time/rate"
)

// Config of a relay.
type Config struct {
	// PacketConn is the TURN port's socket.
	PacketConn net.PacketConn
	// RelayIP is the address allocations are reached at (the host's public
	// address); RelayBind is where their sockets are bound (default
	// RelayIP).
	RelayIP   net.IP
	RelayBind string
	// MinPort and MaxPort bound the relay ports. Default 49152-65535.
	MinPort, MaxPort uint16
	// Secret checks credentials: username "expiry:user", password
	// base64(HMAC-SHA1(Secret, username)).
	Secret string
	Realm  string
	// BytesPerSecond caps what one allocation relays each way; packets
	// past it are dropped, as a congested link would (the data channel's
	// congestion control slows down). Default 1 MB/s.
	BytesPerSecond int
	// Relayed, if not nil, is told the bytes each relayed packet carried.
	Relayed func(n int)
	// Allocated, if not nil, is told of each allocation made.
	Allocated func()
}

// Server is a running relay.
type Server struct{ s *turn.Server }

// New starts a relay on cfg.PacketConn.
func New(cfg Config) (*Server, error) {
	if cfg.Secret == "" {
		return nil, errors.New("turnserver: a secret is needed to check credentials")
	}
	if cfg.RelayIP == nil {
		return nil, errors.New("turnserver: a relay address is needed")
	}
	if cfg.RelayBind == "" {
		cfg.RelayBind = cfg.RelayIP.String()
	}
	if cfg.MinPort == 0 {
		cfg.MinPort, cfg.MaxPort = 49152, 65535
	}
	if cfg.BytesPerSecond == 0 {
		cfg.BytesPerSecond = 1 << 20
	}
	if cfg.Realm == "" {
		cfg.Realm = "peercdn"
	}
	if cfg.Relayed == nil {
		cfg.Relayed = func(int) {}
	}
	quiet := logging.NewDefaultLoggerFactory()
	quiet.DefaultLogLevel = logging.LogLevelDisabled
	gen := &capped{RelayAddressGeneratorPortRange: turn.RelayAddressGeneratorPortRange{
		RelayAddress: cfg.RelayIP, Address: cfg.RelayBind, MinPort: cfg.MinPort, MaxPort: cfg.MaxPort,
	}, bps: cfg.BytesPerSecond, relayed: cfg.Relayed}
	s, err := turn.NewServer(turn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   turn.LongTermTURNRESTAuthHandler(cfg.Secret, quiet.NewLogger("turn")),
		LoggerFactory: quiet,
		EventHandler: turn.EventHandler{
			OnAllocationCreated: func(_, _ net.Addr, _, _, _ string, _ net.Addr, _ int) {
				if cfg.Allocated != nil {
					cfg.Allocated()
				}
			},
		},
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: cfg.PacketConn, RelayAddressGenerator: gen}},
	})
	if err != nil {
		return nil, err
	}
	return &Server{s: s}, nil
}

// Close ends every allocation and closes the socket.
func (s *Server) Close() error { return s.s.Close() }

// Allocations is how many allocations are live.
func (s *Server) Allocations() int { return s.s.AllocationCount() }

// Credentials mints the TURN REST API's credentials for user, valid for ttl.
func Credentials(secret, user string, ttl time.Duration) (username, password string) {
	u, p, _ := turn.GenerateLongTermTURNRESTCredentials(secret, user, ttl)
	return u, p
}

// capped allocates relay sockets whose traffic is capped and counted.
type capped struct {
	turn.RelayAddressGeneratorPortRange
	bps     int
	relayed func(int)
}

func (c *capped) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	pc, addr, err := c.RelayAddressGeneratorPortRange.AllocatePacketConn(conf)
	if err != nil {
		return nil, nil, err
	}
	return &cappedConn{PacketConn: pc,
		out:     rate.NewLimiter(rate.Limit(c.bps), max(c.bps, 64<<10)),
		in:      rate.NewLimiter(rate.Limit(c.bps), max(c.bps, 64<<10)),
		relayed: c.relayed}, addr, nil
}

// cappedConn is one allocation's relay socket.
type cappedConn struct {
	net.PacketConn
	out, in *rate.Limiter
	relayed func(int)
}

// WriteTo sends the client's data on to its peer.
func (c *cappedConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if !c.out.AllowN(time.Now(), len(p)) {
		return len(p), nil // dropped, as on a full link
	}
	n, err := c.PacketConn.WriteTo(p, addr)
	if n > 0 {
		c.relayed(n)
	}
	return n, err
}

// ReadFrom takes a peer's data for the client.
func (c *cappedConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || c.in.AllowN(time.Now(), n) {
			if n > 0 && err == nil {
				c.relayed(n)
			}
			return n, addr, err
		}
	}
}

// PortRange parses "min-max".
func PortRange(s string) (uint16, uint16, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, errors.New("want min-max, e.g. 49152-65535")
	}
	a, err1 := strconv.ParseUint(lo, 10, 16)
	b, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || a == 0 || a > b {
		return 0, 0, errors.New("want min-max with 0 < min <= max <= 65535")
	}
	return uint16(a), uint16(b), nil
}
