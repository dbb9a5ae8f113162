// Package signaling is the peercdn tracker<->agent wire protocol, defined once
// and imported by both sides, plus a small Go client for it.
//
// # Protocol v1
//
// One WebSocket per agent (path /ws), JSON text frames, one Message per frame.
// Every message has a "type"; the other fields depend on it (see Message).
//
//	agent                         tracker
//	  | --- hello {v}              -->  |  first frame, within the handshake timeout
//	  | <-- welcome {peer_id, ice_servers, limits, heartbeat_ms, p2p?}
//	  | --- join {swarm, token, slots} ->|
//	  | <-- peers {swarm, peers[]}       |  up to K suggestions, newcomer offers to them
//	  | --- offer {swarm, to, offer_id, sdp} ------> relayed to "to" as {from, ...}
//	  | <-- answer {swarm, from, offer_id, sdp} <--- only for an offer the tracker relayed
//	  | <-> candidate {swarm, to|from, offer_id, candidate} (trickle ICE, both ways)
//	  | --- ping {slots} / <-- pong      |  every heartbeat_ms; silence past the idle timeout closes
//	  | <-- policy {p2p}                 |  the operator's rollout moved this viewer (P2P on or off)
//	  | <-- goaway {reason, retry_ms}    |  the node drains: reconnect elsewhere after retry_ms
//	  | <-- error {code, message, ref}   |  the request "ref" failed; the connection stays up
//
// A swarm is a content id (chosen by the site; by default the manifest URL's
// path without host or query string, see ContentID) plus a rendition. The
// tracker keeps swarms of different page origins apart.
//
// Versioning: the agent states the version it speaks in hello. A tracker
// accepts every version from MinVersion to Version and answers with the one
// it will speak; unknown fields are ignored so that fields can be added
// without a version change; a change of meaning needs a new version.
package signaling

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// Version is the protocol version this package speaks; MinVersion is the
// oldest one a tracker built from it still accepts.
const (
	Version    = 1
	MinVersion = 1
)

// Type names a message.
type Type string

// Messages from the agent to the tracker.
const (
	TypeHello  Type = "hello"  // first frame: {v}
	TypeJoin   Type = "join"   // {swarm, token?, slots?, ref?}
	TypeLeave  Type = "leave"  // {swarm}
	TypePeers  Type = "peers"  // agent->tracker: ask for more suggestions {swarm}; tracker->agent: {swarm, peers}
	TypeOffer  Type = "offer"  // {swarm, to, offer_id, sdp}; relayed with "from" instead of "to"
	TypeAnswer Type = "answer" // {swarm, to, offer_id, sdp}; relayed likewise
	// TypeCandidate carries one trickled ICE candidate (empty = end of candidates).
	TypeCandidate Type = "candidate" // {swarm, to, offer_id, candidate}
	TypePing      Type = "ping"      // keepalive, optionally updating {slots} and reporting {usage}
	// TypeHash reports the SHA-256 of a segment the agent fetched whole from
	// the CDN {swarm, segment, sha256, url}; from the tracker, it announces a
	// hash it vouches for: with cdn, the hash of the bytes its notary
	// fetched from that CDN origin itself; without, one agreed by
	// hash_quorum independent reporters (quorum integrity only). An agent's
	// hash with only {swarm, segment} asks what is vouched for it: the
	// tracker answers with those hashes, or nothing; with {swarm, segment,
	// url} and no sha256 it announces a CDN fetch under way, and the
	// notary may start its own at once.
	TypeHash Type = "hash"
	// TypeReport tells the tracker that peer "to" sent bytes of {segment}
	// that did not match the trusted hash {swarm, to, segment}.
	TypeReport Type = "report"
)

// Messages from the tracker to the agent.
const (
	TypeWelcome Type = "welcome" // {v, peer_id, ice_servers, limits, heartbeat_ms, p2p?}
	TypePong    Type = "pong"
	// TypePolicy changes what the welcome said about P2P {p2p}: the
	// operator moved the rollout (or hit the kill switch), and this viewer
	// changes cohort. With p2p false the agent leaves its swarms and loads
	// from the CDN only, still reporting usage (the control cohort).
	TypePolicy Type = "policy"
	TypeGoAway Type = "goaway" // {reason, retry_ms}
	TypeError  Type = "error"  // {code, message, ref?}
)

// Field limits, checked by Decode. The tracker additionally limits the whole
// frame (Limits.MaxMessageBytes).
const (
	MaxContentLen   = 512       // bytes of a content id
	MaxRenditionLen = 64        // bytes of a rendition name
	MaxPeerIDLen    = 64        // bytes of a peer id
	MaxOfferIDLen   = 64        // bytes of an offer id
	MaxTokenLen     = 1024      // bytes of a join token
	MaxSDPLen       = 64 << 10  // bytes of an SDP
	MaxCandidateLen = 1024      // bytes of an ICE candidate line
	MaxRefLen       = 64        // bytes of a request reference
	MaxPeersPerMsg  = 64        // peer ids in one peers message
	MaxSlots        = 1000      // an agent's declared free connection slots
	MaxReasonLen    = 256       // bytes of goaway/error text
	MaxICEServers   = 16        // ICE servers in a welcome
	MaxFrameLen     = 256 << 10 // hard upper bound any decoder accepts
	MaxSegmentLen   = 20        // decimal digits of a segment number (uint64)
	MaxURLLen       = 2048      // bytes of a segment URL in a hash report
	MaxUsageBytes   = 1 << 40   // bytes of one kind in one usage report
	MaxUsageStallMs = 3_600_000 // stall time in one usage report
	MaxUsagePeers   = 100_000   // peer connections of one outcome in one usage report
)

// Usage is what an agent's player got since its previous report, sent with
// a ping: operators see offload (P2P bytes over all bytes) and rebuffering
// per swarm without an analytics pipeline of their own. Viewers report it,
// so it is a measure, not an account: the tracker bounds each report by the
// time since the last one.
type Usage struct {
	CDNBytes    int64 `json:"cdn"`
	P2PBytes    int64 `json:"p2p"`
	UploadBytes int64 `json:"up"`
	StallMs     int64 `json:"stall_ms,omitempty"`
	// PeersConnected counts peer connections that opened since the
	// previous report; PeersFailed those that were negotiated (offer and
	// answer exchanged) but never connected: what NAT and firewalls cost.
	PeersConnected int64 `json:"peers_connected,omitempty"`
	PeersFailed    int64 `json:"peers_failed,omitempty"`
}

// UnmarshalJSON reads a usage report under either name of its byte counts:
// cdn, p2p and up, which agents send today, or cdn_bytes, p2p_bytes and
// upload_bytes, the names /stats.json and the metrics use. Agents move to
// the long names once every tracker node reads them (this release on); a
// report with both counts the long name.
func (u *Usage) UnmarshalJSON(b []byte) error {
	type short Usage // the struct's own tags, without this method
	var w struct {
		short
		CDNBytes    *int64 `json:"cdn_bytes"`
		P2PBytes    *int64 `json:"p2p_bytes"`
		UploadBytes *int64 `json:"upload_bytes"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*u = Usage(w.short)
	for _, f := range []struct {
		long *int64
		to   *int64
	}{{w.CDNBytes, &u.CDNBytes}, {w.P2PBytes, &u.P2PBytes}, {w.UploadBytes, &u.UploadBytes}} {
		if f.long != nil {
			*f.to = *f.long
		}
	}
	return nil
}

// Add adds o to u, field by field.
func (u *Usage) Add(o Usage) {
	u.CDNBytes += o.CDNBytes
	u.P2PBytes += o.P2PBytes
	u.UploadBytes += o.UploadBytes
	u.StallMs += o.StallMs
	u.PeersConnected += o.PeersConnected
	u.PeersFailed += o.PeersFailed
}

// Minus returns u less o, field by field: what was counted since o.
func (u Usage) Minus(o Usage) Usage {
	o.CDNBytes, o.P2PBytes, o.UploadBytes = -o.CDNBytes, -o.P2PBytes, -o.UploadBytes
	o.StallMs, o.PeersConnected, o.PeersFailed = -o.StallMs, -o.PeersConnected, -o.PeersFailed
	u.Add(o)
	return u
}

func (u *Usage) validate() error {
	for _, n := range []int64{u.CDNBytes, u.P2PBytes, u.UploadBytes} {
		if n < 0 || n > MaxUsageBytes {
			return fmt.Errorf("usage bytes must be 0..%d", int64(MaxUsageBytes))
		}
	}
	if u.StallMs < 0 || u.StallMs > MaxUsageStallMs {
		return fmt.Errorf("usage stall_ms must be 0..%d", MaxUsageStallMs)
	}
	if u.PeersConnected < 0 || u.PeersConnected > MaxUsagePeers || u.PeersFailed < 0 || u.PeersFailed > MaxUsagePeers {
		return fmt.Errorf("usage peers_connected and peers_failed must be 0..%d", MaxUsagePeers)
	}
	return nil
}

// Empty reports whether u carries nothing to count.
func (u *Usage) Empty() bool { return *u == Usage{} }

// Swarm identifies a group of viewers holding the same segments.
type Swarm struct {
	Content   string `json:"content"`
	Rendition string `json:"rendition,omitempty"`
}

func (s Swarm) String() string {
	if s.Rendition == "" {
		return s.Content
	}
	return s.Content + "#" + s.Rendition
}

// ICEServer is a STUN or TURN server the agent should use.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty" yaml:"username"`
	Credential string   `json:"credential,omitempty" yaml:"credential"`
}

// Limits tells the agent what the tracker enforces, so a well-behaved agent
// never hits them.
type Limits struct {
	MaxMessageBytes   int     `json:"max_message_bytes"`
	MaxSwarms         int     `json:"max_swarms"`
	MessagesPerSecond float64 `json:"messages_per_second"`
	Suggestions       int     `json:"suggestions"`
	// HashQuorum is how many independent CDN reports make a segment hash
	// trusted; agents then take a peer's bytes only when they match one.
	// 0: this tracker vouches for no hash, and agents take peers' bytes
	// unverified.
	HashQuorum int `json:"hash_quorum,omitempty"`
	// Integrity is where the tracker's hashes come from: IntegrityNotary
	// (its own fetch from the CDN, bound to the CDN origin), IntegrityQuorum
	// (viewers' agreeing reports), or empty (none: agents take peers' bytes
	// unverified unless the origin publishes hash manifests).
	Integrity string `json:"integrity,omitempty"`
	// HashManifests says the CDN publishes hash manifests
	// (peercdn-hashes.json) beside its segments: agents look for them. Where
	// it publishes none, agents do not ask (each miss is a 404 in every
	// viewer's console).
	HashManifests bool `json:"hash_manifests,omitempty"`
}

// Integrity modes a tracker announces in Limits.Integrity.
const (
	IntegrityNotary = "notary"
	IntegrityQuorum = "quorum"
)

// CDNOrigin is the origin (scheme://host[:port], lower case, default port
// dropped) of an http(s) segment URL: what a notary hash is bound to. ok is
// false for anything else, and for URLs with user info.
func CDNOrigin(raw string) (origin string, ok bool) {
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", false
	}
	host := strings.ToLower(u.Host)
	if p := u.Port(); (u.Scheme == "http" && p == "80") || (u.Scheme == "https" && p == "443") {
		host = strings.TrimSuffix(host, ":"+p)
	}
	return u.Scheme + "://" + host, true
}

// Message is every protocol message; Type says which fields are meaningful.
type Message struct {
	Type Type `json:"type"`
	// Ref is an optional request reference chosen by the agent and echoed in
	// the reply or error to that request.
	Ref string `json:"ref,omitempty"`

	V           int         `json:"v,omitempty"`           // hello, welcome
	PeerID      string      `json:"peer_id,omitempty"`     // welcome
	ICEServers  []ICEServer `json:"ice_servers,omitempty"` // welcome
	AllowRelay  bool        `json:"allow_relay,omitempty"` // welcome: agents may use ICEServers' TURN (agent.Config.AllowRelay)
	Limits      *Limits     `json:"limits,omitempty"`      // welcome
	HeartbeatMs int         `json:"heartbeat_ms,omitempty"`
	// P2P (welcome, policy) is false for a viewer the tracker keeps off
	// P2P: outside the operator's rollout, its control cohort. A welcome
	// without it means true.
	P2P *bool `json:"p2p,omitempty"`

	Swarm *Swarm   `json:"swarm,omitempty"`
	Token string   `json:"token,omitempty"`
	Slots *int     `json:"slots,omitempty"` // free peer-connection slots, join and ping
	Peers []string `json:"peers,omitempty"`
	Usage *Usage   `json:"usage,omitempty"` // ping

	To        string `json:"to,omitempty"`
	From      string `json:"from,omitempty"`
	OfferID   string `json:"offer_id,omitempty"`
	SDP       string `json:"sdp,omitempty"`
	Candidate string `json:"candidate,omitempty"`

	Segment string `json:"segment,omitempty"` // hash, report: decimal segment number
	SHA256  string `json:"sha256,omitempty"`  // hash: 64 lowercase hex digits
	URL     string `json:"url,omitempty"`     // hash (agent): where the CDN served the segment
	Range   string `json:"range,omitempty"`   // hash (agent): its bytes in URL, "first-last", for a byte-range segment
	CDN     string `json:"cdn,omitempty"`     // hash (tracker): the CDN origin the notary fetched it from

	Code    Code   `json:"code,omitempty"`     // error
	Text    string `json:"message,omitempty"`  // error, goaway reason
	RetryMs int    `json:"retry_ms,omitempty"` // goaway
}

// Encode returns the wire form of m.
func Encode(m *Message) ([]byte, error) { return json.Marshal(m) }

// Decode parses and validates one frame. It never panics; the error wraps
// ErrBadMessage and says which field is wrong.
func Decode(data []byte) (*Message, error) {
	if len(data) > MaxFrameLen {
		return nil, fmt.Errorf("%w: frame of %d bytes exceeds %d", ErrBadMessage, len(data), MaxFrameLen)
	}
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// RefOf is the ref of a frame Decode refused, so the error can name the
// request it answers: empty if the frame has none, is not JSON, or its ref
// is longer than MaxRefLen.
func RefOf(data []byte) string {
	var r struct {
		Ref string `json:"ref"`
	}
	if len(data) > MaxFrameLen || json.Unmarshal(data, &r) != nil || len(r.Ref) > MaxRefLen {
		return ""
	}
	return r.Ref
}

// Validate checks that m carries the fields its type needs, each within
// its limit.
func (m *Message) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrBadMessage, m.Type, fmt.Sprintf(format, args...))
	}
	if len(m.Ref) > MaxRefLen {
		return bad("ref longer than %d bytes", MaxRefLen)
	}
	if m.Slots != nil && (*m.Slots < 0 || *m.Slots > MaxSlots) {
		return bad("slots must be 0..%d", MaxSlots)
	}
	needSwarm := func() error {
		if m.Swarm == nil {
			return bad("missing swarm")
		}
		return m.Swarm.validate()
	}
	// relay checks a peer-to-peer message: exactly one of to/from, by direction.
	relay := func() error {
		if err := needSwarm(); err != nil {
			return err
		}
		if m.To == "" && m.From == "" {
			return bad("missing to")
		}
		if len(m.To) > MaxPeerIDLen || len(m.From) > MaxPeerIDLen {
			return bad("peer id longer than %d bytes", MaxPeerIDLen)
		}
		if m.OfferID == "" || len(m.OfferID) > MaxOfferIDLen {
			return bad("offer_id must be 1..%d bytes", MaxOfferIDLen)
		}
		return nil
	}
	switch m.Type {
	case TypeHello:
		if m.V <= 0 {
			return bad("missing protocol version v")
		}
	case TypeWelcome:
		if m.PeerID == "" || len(m.PeerID) > MaxPeerIDLen {
			return bad("bad peer_id")
		}
		if len(m.ICEServers) > MaxICEServers {
			return bad("more than %d ice servers", MaxICEServers)
		}
	case TypeJoin:
		if len(m.Token) > MaxTokenLen {
			return bad("token longer than %d bytes", MaxTokenLen)
		}
		return needSwarm()
	case TypeLeave:
		return needSwarm()
	case TypePeers:
		if len(m.Peers) > MaxPeersPerMsg {
			return bad("more than %d peers", MaxPeersPerMsg)
		}
		for _, p := range m.Peers {
			if p == "" || len(p) > MaxPeerIDLen {
				return bad("bad peer id")
			}
		}
		return needSwarm()
	case TypeOffer, TypeAnswer:
		if m.SDP == "" || len(m.SDP) > MaxSDPLen {
			return bad("sdp must be 1..%d bytes", MaxSDPLen)
		}
		return relay()
	case TypeCandidate:
		if len(m.Candidate) > MaxCandidateLen {
			return bad("candidate longer than %d bytes", MaxCandidateLen)
		}
		return relay()
	case TypeHash:
		if err := validSegment(m.Segment); err != nil {
			return bad("%v", err)
		}
		if _, _, err := ParseRange(m.Range); err != nil {
			return bad("%v", err)
		}
		if m.SHA256 == "" && m.CDN == "" && len(m.URL) <= MaxURLLen {
			// Agent: a query (no url), what is vouched for this segment;
			// or an announcement (url), fetching it from there now.
			return needSwarm()
		}
		if !validSHA256(m.SHA256) {
			return bad("sha256 must be 64 lowercase hex digits")
		}
		if len(m.URL) > MaxURLLen {
			return bad("url longer than %d bytes", MaxURLLen)
		}
		if m.CDN != "" {
			if o, ok := CDNOrigin(m.CDN); !ok || o != m.CDN || len(m.CDN) > MaxURLLen {
				return bad("cdn must be an http(s) origin, scheme://host[:port]")
			}
		}
		return needSwarm()
	case TypeReport:
		if err := validSegment(m.Segment); err != nil {
			return bad("%v", err)
		}
		if m.To == "" || len(m.To) > MaxPeerIDLen {
			return bad("to must be 1..%d bytes", MaxPeerIDLen)
		}
		return needSwarm()
	case TypePing, TypePong:
		if m.Usage != nil {
			if err := m.Usage.validate(); err != nil {
				return bad("%v", err)
			}
		}
	case TypePolicy:
		if m.P2P == nil {
			return bad("missing p2p")
		}
	case TypeGoAway:
		if len(m.Text) > MaxReasonLen || m.RetryMs < 0 {
			return bad("bad reason or retry_ms")
		}
	case TypeError:
		if m.Code == "" {
			return bad("missing code")
		}
	case "":
		return fmt.Errorf("%w: missing type", ErrBadMessage)
	default:
		return fmt.Errorf("%w: unknown type %.32q", ErrBadMessage, string(m.Type))
	}
	return nil
}

func (s *Swarm) validate() error {
	if s.Content == "" || len(s.Content) > MaxContentLen {
		return fmt.Errorf("%w: swarm content must be 1..%d bytes", ErrBadMessage, MaxContentLen)
	}
	if len(s.Rendition) > MaxRenditionLen {
		return fmt.Errorf("%w: swarm rendition longer than %d bytes", ErrBadMessage, MaxRenditionLen)
	}
	for _, r := range s.Content + s.Rendition {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: swarm has a control character", ErrBadMessage)
		}
	}
	return nil
}

// ContentID derives the default content id from a manifest URL: its path,
// without scheme, host, query string or fragment. Tokenized URLs and the
// same title served from several CDN hosts therefore share one swarm; the
// tracker keeps different page origins apart. Sites whose paths do not
// identify a title should set the content id themselves.
func ContentID(manifestURL string) string {
	u, err := url.Parse(manifestURL)
	if err != nil || u.Path == "" {
		// Not a URL we understand: fall back to cutting the query by hand.
		s, _, _ := strings.Cut(manifestURL, "?")
		s, _, _ = strings.Cut(s, "#")
		return s
	}
	return u.Path
}

func validSegment(s string) error {
	if s == "" || len(s) > MaxSegmentLen {
		return fmt.Errorf("segment must be 1..%d decimal digits", MaxSegmentLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return fmt.Errorf("segment must be decimal digits")
		}
	}
	return nil
}

func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// SessionParam is the query parameter of the signaling URL (…/ws?session=…)
// that carries the agent's session: a random id it keeps for its lifetime
// (a page load), over every reconnect. The tracker puts a viewer in its
// rollout cohort by it, so a viewer keeps its cohort when a connection
// breaks or a node drains. Optional; chosen by the agent, so it decides
// nothing but which cohort, which is the agent's to accept anyway.
const SessionParam = "session"

// MaxSessionLen bounds a session id.
const MaxSessionLen = 64

// ValidSession reports whether s is a session id the tracker uses: 16 to
// MaxSessionLen letters, digits, '-' or '_'.
func ValidSession(s string) bool {
	if len(s) < 16 || len(s) > MaxSessionLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
