package tracker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/turnserver"
)

// Config is everything an operator can set. DefaultConfig gives safe values
// for a single public node; every field documents its default.
type Config struct {
	// deprecated names the old keys this config was given (foldDeprecated).
	deprecated []string

	// Listen is the HTTP address. Default ":8080".
	Listen string `yaml:"listen"`

	// AllowedOrigins are the page origins that may connect, as host patterns
	// ("example.com", "*.example.com") or "scheme://host" patterns, matched
	// with path.Match. Empty allows every origin (logged as a warning at start):
	// then any site can use this tracker. Default empty.
	AllowedOrigins []string `yaml:"allowed_origins"`

	// TokenSecret, when set, makes every join carry a token signed with it
	// (see Token). Reconnecting agents must present it again. Default empty.
	TokenSecret string `yaml:"token_secret"`

	// ICEServers are handed to every agent in the welcome. Default none:
	// agents then only connect where host candidates reach (same network).
	ICEServers []signaling.ICEServer `yaml:"ice_servers"`
	// AllowRelay lets agents use the TURN servers among ICEServers. Default
	// false: a relayed peer costs the TURN server twice the segment's bytes
	// and saves the CDN once, so agents ignore TURN unless told.
	AllowRelay bool `yaml:"allow_relay"`
	// PublicHost is the name or address viewers reach this node's STUN and
	// TURN ports at. Default empty: the host each viewer used to reach the
	// tracker (its Host header), right unless a proxy on another host
	// stands in front.
	PublicHost string `yaml:"public_host"`
	// STUNListen is the UDP address of the built-in STUN server, which
	// every welcome then names first. Default ":3478"; empty: none.
	STUNListen string `yaml:"stun_listen"`
	// TURNListen is the UDP address of the built-in TURN relay. Default
	// empty: none. Relays cost their bytes twice; agents use them only
	// with allow_relay.
	TURNListen string `yaml:"turn_listen"`
	// TURNRelayIP is the address relay allocations are reached at.
	// Default: public_host if it is an IP address, else turn_listen's IP.
	TURNRelayIP string `yaml:"turn_relay_ip"`
	// TURNPorts is the relay ports' range. Default "49152-65535".
	TURNPorts string `yaml:"turn_ports"`
	// TURNBytesPerSecond caps what one viewer's allocation relays each
	// way. Default 1 MiB/s (8 Mbit/s: a few HD renditions).
	TURNBytesPerSecond int `yaml:"turn_bytes_per_second"`
	// TURNSecret mints TURN REST API credentials (coturn's
	// use-auth-secret) in each welcome: for the embedded relay, and for
	// every turn: server in ICEServers given without a username. Default
	// empty (serve --turn-listen makes one up).
	TURNSecret string `yaml:"turn_secret"`
	// TURNCredentialTTL is how long minted TURN credentials are valid: a
	// viewing session's length. Default 12h.
	TURNCredentialTTL time.Duration `yaml:"turn_credential_ttl"`

	// Suggestions is K, how many peers a newcomer is offered. Default 8.
	Suggestions int `yaml:"suggestions"`

	// MaxMessageBytes bounds one frame; larger frames close the connection
	// with 1009. Default 64 KiB (an SDP with candidates is 1-8 KiB).
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxSwarmsPerConn bounds the swarms one connection is in. Default 16
	// (a page with a few players, each switching renditions).
	MaxSwarmsPerConn int `yaml:"max_swarms_per_conn"`
	// MaxPeersPerSwarm bounds one swarm; further joins get swarm_full.
	// Default 20000.
	MaxPeersPerSwarm int `yaml:"max_peers_per_swarm"`
	// MaxPendingOffers bounds the unanswered offers one connection has
	// outstanding (on /announce: the offers it may hand out per offer_ttl).
	// Default 64.
	MaxPendingOffers int `yaml:"max_pending_offers"`
	// OfferTTL is how long an offer may be answered, and how long after the
	// last answer or candidate its pair may still trickle candidates.
	// Default 60s.
	OfferTTL time.Duration `yaml:"offer_ttl"`

	// MessagesPerSecond and MessageBurst rate-limit one connection.
	// Defaults 20/s, burst 60: a newcomer sends K offers and their candidates.
	MessagesPerSecond float64 `yaml:"messages_per_second"`
	MessageBurst      int     `yaml:"message_burst"`
	// IPMessagesPerSecond and IPMessageBurst rate-limit all connections of
	// one IP together. Defaults 200/s, burst 600 (a household or office NAT).
	IPMessagesPerSecond float64 `yaml:"ip_messages_per_second"`
	IPMessageBurst      int     `yaml:"ip_message_burst"`
	// MaxStrikes is how many rate-limited or invalid messages a connection
	// may send before it is closed with 1008. Default 50.
	MaxStrikes int `yaml:"max_strikes"`
	// MaxConnsPerIP bounds connections from one IP; more are refused with
	// HTTP 429. Default 64.
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
	// MaxConns bounds connections to this node; more are refused with 503.
	// Default 100000.
	MaxConns int `yaml:"max_conns"`
	// TrustedProxies are the CIDRs of load balancers whose X-Forwarded-For
	// header names the client IP (the last address not in these CIDRs is
	// used). Default none: the TCP peer address is the client IP.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Networks groups viewers for matching: a newcomer is suggested peers
	// of its own group first (an office, a campus, an ISP's or a region's
	// prefixes), where segments travel faster and cost no transit. A viewer
	// in none of them is grouped with its /24 (IPv4) or /48 (IPv6): its
	// household or office. The longest matching prefix wins. Default none.
	Networks []NetworkGroup `yaml:"networks"`

	// HandshakeTimeout is how long a new connection has to say hello.
	// Default 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// IdleTimeout closes a connection that sent nothing for this long.
	// Agents ping every IdleTimeout/3. Default 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// AnnounceInterval is the interval WebTorrent clients on /announce are
	// told to announce at. They cannot ping, so their sockets are closed
	// after two missed announces (2*AnnounceInterval + idle_timeout/2) rather
	// than after idle_timeout. Default 120s, as bittorrent-tracker's.
	AnnounceInterval time.Duration `yaml:"announce_interval"`
	// WriteTimeout bounds one write to a client; a client that cannot take
	// a frame within it is closed. Default 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// SendQueue is how many frames may wait for one slow client before it is
	// closed. Default 256.
	SendQueue int `yaml:"send_queue"`
	// SendQueueBytes bounds the bytes waiting for one client: a member
	// relaying large offers to a slow reader cannot make the node hold
	// SendQueue of them. Default 1 MiB.
	SendQueueBytes int `yaml:"send_queue_bytes"`
	// DrainTimeout is how long a draining node waits for clients to leave
	// after goaway before closing them. Default 15s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// RetrySpread spreads reconnects after goaway: each client is told to
	// wait a random time up to it. Default 5s.
	RetrySpread time.Duration `yaml:"retry_spread"`

	// StatsSwarms bounds the swarms listed in /stats.json (largest first).
	// Default 1000.
	StatsSwarms int `yaml:"stats_swarms"`

	// Integrity is where the hashes agents check peers' bytes against come
	// from, when the origin publishes no hash manifest (agents always
	// prefer the origin's own manifest):
	//   - "notary" (default): the tracker fetches each segment itself, once
	//     per segment and CDN origin, from the URL the first viewer to fetch
	//     it from the CDN reported, and vouches for that hash for that CDN
	//     origin only. Viewers cannot outvote it; reporters of another hash
	//     are removed from the swarm. Costs the CDN one more copy per
	//     segment, and the tracker that traffic.
	//   - "quorum": hash_quorum viewers from distinct networks agree. K
	//     colluding viewers in K networks (K >= hash_quorum) can make the
	//     tracker vouch for bytes of their choosing where no manifest is
	//     published: only for trackers that cannot reach the CDN.
	//   - "off": no hashes; agents take peers' bytes unverified where the
	//     origin publishes no manifest. Do not.
	Integrity string `yaml:"integrity"`
	// HashQuorum is how many independent viewers must report the same
	// SHA-256 for a segment they fetched from the CDN before the tracker
	// vouches for it, under integrity "quorum". Default 2.
	HashQuorum int `yaml:"hash_quorum"`
	// HashDistinctNetworks counts reporters of one /24 (IPv4) or /48 (IPv6)
	// as one. Default true; `serve --demo` turns it off, as every viewer of
	// a local demo shares 127.0.0.1.
	HashDistinctNetworks bool `yaml:"hash_distinct_networks"`
	// HashManifests tells agents that the CDN publishes hash manifests
	// (`peercdn hash`) beside its segments, so that they look for them:
	// checked against the origin's own hashes, peers' bytes need no notary
	// fetch. Default false: agents ask the CDN for nothing it does not
	// serve. A page can say otherwise (the hashManifests option).
	HashManifests bool `yaml:"hash_manifests"`
	// BadPeerReports is how many distinct peers must report a peer's bytes
	// as corrupt before it is removed from the swarm for good. Default 2.
	BadPeerReports int `yaml:"bad_peer_reports"`

	// NotaryCDNs are URL prefixes of CDNs ("https://cdn.example.com/live/"): when
	// set, the notary fetches only URLs under them (at any address), and
	// under integrity "quorum" it settles contested segments from them.
	// Default empty: under "notary", any http(s) URL a viewer reports, at
	// public addresses only (see NotaryPrivate); the hash is bound to that
	// URL's origin, so a viewer naming its own server vouches only for
	// viewers of that server. Never follows redirects.
	NotaryCDNs []string `yaml:"notary_cdns"`
	// NotaryOrigins is NotaryCDNs under its old name, added to it when the
	// config is read. Deprecated: use notary_cdns.
	NotaryOrigins []string `yaml:"notary_origins"`
	// NotaryPrivate lets the notary fetch from loopback, private, link-local
	// and shared (CGNAT) addresses when NotaryCDNs is empty. Default
	// false: viewers name the URLs, and must not aim the tracker at the
	// operator's own network. `serve --demo` turns it on (its origin is
	// itself); list an internal CDN in NotaryCDNs instead.
	NotaryPrivate bool `yaml:"notary_private"`
	// NotaryFetches is how many notary fetches run at once on a node; more
	// wait in a queue of 16 times that. Default 16.
	NotaryFetches int `yaml:"notary_fetches"`

	// Redis, when set, joins this node to every node using the same Redis:
	// swarms span nodes and relays cross them. redis://[user:pass@]host:port
	// (rediss:// for TLS). Default empty: a single node, in memory.
	Redis string `yaml:"redis"`
	// RedisCluster says Redis is a Redis Cluster; further seed nodes go in
	// the URL as ?addr=host:port. Default false.
	RedisCluster bool `yaml:"redis_cluster"`
	// MemberTTL is how long a node's peers outlive its last refresh in the
	// shared store: a crashed node's viewers leave other nodes' swarms
	// within it. Nodes refresh every MemberTTL/3. Default 15s.
	MemberTTL time.Duration `yaml:"member_ttl"`
	// StatsInterval is how often a clustered node stores its /stats.json
	// figures for the others' cluster-wide view (/stats.json?scope=cluster,
	// the dashboard); a node's figures leave that view 3 intervals after
	// its last. Default 5s.
	StatsInterval time.Duration `yaml:"stats_interval"`
	// P2PPercent is the share of viewers (peercdn agents) that use P2P; the
	// rest, the control cohort, load from the CDN only and report usage
	// for comparison (rollout.go). 0 turns P2P off. PUT /admin/rollout
	// changes it live; on a cluster, a value set that way overrides this
	// one. Default 100.
	P2PPercent int `yaml:"p2p_percent"`
	// AdminToken guards the admin API (PUT /admin/rollout) as a bearer
	// token; empty, the admin API is off.
	AdminToken string `yaml:"admin_token"`
}

// DefaultConfig returns the configuration `peercdn serve` runs with when
// nothing is set.
func DefaultConfig() Config {
	return Config{
		Listen:               ":8080",
		Suggestions:          8,
		MaxMessageBytes:      64 << 10,
		MaxSwarmsPerConn:     16,
		MaxPeersPerSwarm:     20000,
		MaxPendingOffers:     64,
		OfferTTL:             60 * time.Second,
		MessagesPerSecond:    20,
		MessageBurst:         60,
		IPMessagesPerSecond:  200,
		IPMessageBurst:       600,
		MaxStrikes:           50,
		MaxConnsPerIP:        64,
		MaxConns:             100000,
		HandshakeTimeout:     10 * time.Second,
		IdleTimeout:          60 * time.Second,
		AnnounceInterval:     120 * time.Second,
		WriteTimeout:         10 * time.Second,
		SendQueue:            256,
		SendQueueBytes:       1 << 20,
		TURNCredentialTTL:    12 * time.Hour,
		STUNListen:           ":3478",
		TURNPorts:            "49152-65535",
		TURNBytesPerSecond:   1 << 20,
		DrainTimeout:         15 * time.Second,
		RetrySpread:          5 * time.Second,
		StatsSwarms:          1000,
		MemberTTL:            15 * time.Second,
		StatsInterval:        5 * time.Second,
		P2PPercent:           100,
		Integrity:            IntegrityNotary,
		HashQuorum:           2,
		HashDistinctNetworks: true,
		NotaryFetches:        16,
		BadPeerReports:       2,
	}
}

// Integrity modes (Config.Integrity).
const (
	IntegrityNotary = signaling.IntegrityNotary
	IntegrityQuorum = signaling.IntegrityQuorum
	IntegrityOff    = "off"
)

// NetworkGroup names a group of networks for matching (Config.Networks).
type NetworkGroup struct {
	Name  string   `yaml:"name"`
	CIDRs []string `yaml:"cidrs"`
}

// maxNetworkPrefixes bounds Config.Networks (each join's lookup scans them).
const maxNetworkPrefixes = 10000

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("config")

var patternSyntax = regexp.MustCompile(`^[A-Za-z0-9.*?:/\[\]\-_]+$`)

// Validate reports the first field that is out of range, by its YAML name.
func (c *Config) Validate() error {
	c.foldDeprecated()
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return bad("listen", "want host:port, got %q", c.Listen)
	}
	for _, p := range c.AllowedOrigins {
		if !patternSyntax.MatchString(p) {
			return bad("allowed_origins", "pattern %q has characters a host pattern cannot have", p)
		}
	}
	if c.TokenSecret != "" && len(c.TokenSecret) < 16 {
		return bad("token_secret", "use at least 16 bytes")
	}
	for _, s := range c.ICEServers {
		if len(s.URLs) == 0 {
			return bad("ice_servers", "a server needs urls")
		}
		for _, u := range s.URLs {
			if !strings.HasPrefix(u, "stun:") && !strings.HasPrefix(u, "stuns:") &&
				!strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
				return bad("ice_servers", "%q is not a stun:, stuns:, turn: or turns: URL", u)
			}
		}
	}
	if c.PublicHost != "" && !validHost(c.PublicHost) {
		return bad("public_host", "%q is not a host name or IP address", c.PublicHost)
	}
	for _, a := range []struct{ name, v string }{{"stun_listen", c.STUNListen}, {"turn_listen", c.TURNListen}} {
		if _, _, err := net.SplitHostPort(a.v); a.v != "" && err != nil {
			return bad(a.name, "want host:port or :port, got %q", a.v)
		}
	}
	if c.TURNRelayIP != "" {
		if _, err := netip.ParseAddr(c.TURNRelayIP); err != nil {
			return bad("turn_relay_ip", "%q is not an IP address", c.TURNRelayIP)
		}
	}
	if c.TURNListen != "" {
		if _, _, err := turnserver.PortRange(c.TURNPorts); err != nil {
			return bad("turn_ports", "%q: %v", c.TURNPorts, err)
		}
	}
	if c.TURNSecret != "" && len(c.TURNSecret) < 16 {
		return bad("turn_secret", "use at least 16 bytes")
	}
	if len(c.ICEServers) > signaling.MaxICEServers-2 {
		// Two places are kept for the built-in STUN and TURN.
		return bad("ice_servers", "at most %d", signaling.MaxICEServers-2)
	}
	if len(c.ICEServers) > signaling.MaxICEServers {
		return bad("ice_servers", "at most %d", signaling.MaxICEServers)
	}
	for _, p := range c.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil {
			return bad("trusted_proxies", "%q is not a CIDR", p)
		}
	}
	prefixes := 0
	for _, g := range c.Networks {
		if g.Name == "" || len(g.CIDRs) == 0 {
			return bad("networks", "each group needs a name and cidrs")
		}
		for _, p := range g.CIDRs {
			if _, err := netip.ParsePrefix(p); err != nil {
				return bad("networks", "group %q: %q is not a CIDR", g.Name, p)
			}
		}
		if prefixes += len(g.CIDRs); prefixes > maxNetworkPrefixes {
			return bad("networks", "at most %d prefixes in all", maxNetworkPrefixes)
		}
	}
	if c.Redis != "" && !strings.HasPrefix(c.Redis, "redis://") && !strings.HasPrefix(c.Redis, "rediss://") {
		return bad("redis", "want redis://host:port or rediss://host:port, got %q", c.Redis)
	}
	switch c.Integrity {
	case IntegrityNotary, IntegrityQuorum, IntegrityOff:
	default:
		return bad("integrity", "%q: want notary, quorum or off", c.Integrity)
	}
	for _, p := range c.NotaryCDNs {
		u, err := url.Parse(p)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || !strings.HasSuffix(u.Path, "/") {
			return bad("notary_cdns", "%q: want http(s)://host/path/ ending in /", p)
		}
	}
	ints := []struct {
		name      string
		v, lo, hi int
	}{
		{"suggestions", c.Suggestions, 1, signaling.MaxPeersPerMsg},
		{"max_message_bytes", c.MaxMessageBytes, 1024, signaling.MaxFrameLen},
		{"max_swarms_per_conn", c.MaxSwarmsPerConn, 1, 1024},
		{"max_peers_per_swarm", c.MaxPeersPerSwarm, 2, 10_000_000},
		{"max_pending_offers", c.MaxPendingOffers, 1, 10000},
		{"message_burst", c.MessageBurst, 1, 1_000_000},
		{"ip_message_burst", c.IPMessageBurst, 1, 10_000_000},
		{"max_strikes", c.MaxStrikes, 1, 1_000_000},
		{"max_conns_per_ip", c.MaxConnsPerIP, 1, 10_000_000},
		{"max_conns", c.MaxConns, 1, 100_000_000},
		{"send_queue", c.SendQueue, 1, 100_000},
		{"send_queue_bytes", c.SendQueueBytes, 64 << 10, 1 << 30},
		{"turn_bytes_per_second", c.TURNBytesPerSecond, 16 << 10, 1 << 30},
		{"stats_swarms", c.StatsSwarms, 0, 1_000_000},
		{"hash_quorum", c.HashQuorum, 1, 16},
		{"notary_fetches", c.NotaryFetches, 1, 1024},
		{"bad_peer_reports", c.BadPeerReports, 1, 1000},
		{"p2p_percent", c.P2PPercent, 0, 100},
	}
	for _, f := range ints {
		if f.v < f.lo || f.v > f.hi {
			return bad(f.name, "%d is outside %d..%d", f.v, f.lo, f.hi)
		}
	}
	if c.SendQueueBytes < 2*c.MaxMessageBytes {
		// A relayed message is re-encoded with its sender's id: room for
		// two keeps the largest one from closing a reader that is idle.
		return bad("send_queue_bytes", "must be at least twice max_message_bytes")
	}
	if c.MessagesPerSecond <= 0 {
		return bad("messages_per_second", "must be positive")
	}
	if c.IPMessagesPerSecond < c.MessagesPerSecond {
		return bad("ip_messages_per_second", "must be at least messages_per_second")
	}
	durs := []struct {
		name string
		v    time.Duration
		lo   time.Duration
	}{
		{"offer_ttl", c.OfferTTL, time.Second},
		{"handshake_timeout", c.HandshakeTimeout, 100 * time.Millisecond},
		{"idle_timeout", c.IdleTimeout, time.Second},
		{"announce_interval", c.AnnounceInterval, time.Second},
		{"write_timeout", c.WriteTimeout, 100 * time.Millisecond},
		{"turn_credential_ttl", c.TURNCredentialTTL, time.Minute},
		{"drain_timeout", c.DrainTimeout, 0},
		{"retry_spread", c.RetrySpread, 0},
		{"member_ttl", c.MemberTTL, 3 * time.Second},
		{"stats_interval", c.StatsInterval, 100 * time.Millisecond},
	}
	for _, d := range durs {
		if d.v < d.lo {
			return bad(d.name, "%v is below %v", d.v, d.lo)
		}
	}
	return nil
}

// LoadConfigFile reads a YAML file over c. Keys c does not have are an error
// naming the key, so a typo never silently falls back to a default.
func LoadConfigFile(path string, c *Config) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	defer f.Close()
	return DecodeConfig(f, c)
}

// DecodeConfig reads YAML from r over c, strictly.
func DecodeConfig(r io.Reader, c *Config) error {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s", ErrConfig, unknownKeyMessage(err))
	}
	c.foldDeprecated()
	return nil
}

// foldDeprecated moves settings given under an old name to the new one.
func (c *Config) foldDeprecated() {
	if len(c.NotaryOrigins) > 0 {
		c.NotaryCDNs = append(c.NotaryCDNs, c.NotaryOrigins...)
		c.NotaryOrigins = nil
		c.deprecated = append(c.deprecated, "notary_origins (now notary_cdns)")
	}
}

// DeprecatedKeys names the settings this config gave under an old name,
// for a warning.
func (c *Config) DeprecatedKeys() []string { return c.deprecated }

var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// unknownKeyMessage rewords yaml.v3's "field x not found in type tracker.Config".
func unknownKeyMessage(err error) string {
	return unknownField.ReplaceAllString(err.Error(), "unknown key $1")
}
