package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pion/transport/v5"

	"github.com/peercdn/peercdn/signaling"
)

// Config is one viewer's agent configuration. DefaultConfig fills every
// field; each documents its default.
type Config struct {
	// TrackerURL is the tracker's signaling WebSocket, e.g.
	// "wss://tracker.example.com/ws". Empty: no peers, CDN only.
	TrackerURL string
	// Origin is sent as the Origin header by native agents so that they join
	// the swarms of that page origin. Browsers set it themselves. Default none.
	Origin string
	// Token returns the join token for a content id, when the tracker
	// requires tokens. Default nil: no token.
	Token func(content string) string

	// MaxPeers bounds connected peers per swarm. Default 8 (4 when Mobile).
	MaxPeers int
	// DialsAtOnce bounds the offers under way at once in a swarm: the
	// other peers the tracker suggests are dialled as those open, fail or
	// time out. 0: all at once. The browser build uses 2: each peer
	// connection costs the page's main thread, and a late joiner dialling
	// five at once kept it 90% busy for its first 8 s of playback, when
	// its buffer is thinnest.
	DialsAtOnce int
	// MaxPeerConnections bounds peer connections created over the agent's
	// life: browsers cap RTCPeerConnections at 500 per tab, for its whole
	// life, so hours of churn must stay well under. Default 300.
	MaxPeerConnections int
	// CacheBytes bounds the segment cache. Default 256 MiB (64 MiB when Mobile).
	CacheBytes int64
	// UploadBytesPerSecond caps upload to all peers. Default 0: no cap.
	UploadBytesPerSecond int
	// ConsumeOnly downloads from peers but never uploads (for metered
	// networks). Default false.
	ConsumeOnly bool
	// Mobile picks the smaller defaults for MaxPeers and CacheBytes.
	Mobile bool

	// P2PStallTimeout aborts a peer transfer that delivers no byte for this
	// long; the rest comes from the CDN. Default 1.5s: above SCTP's 1 s
	// minimum retransmission timeout, which a lost tail of a transfer
	// waits out (800 ms cut such transfers: cable x 50 on a 0.9 Mbit/s
	// stream, offload 0.580 -> 0.673, abandoned 1,300 -> 994).
	P2PStallTimeout time.Duration
	// MaxWait bounds how long a request due within FarAhead waits for a
	// peer to announce a segment nobody holds yet, whatever the deadline:
	// deadlines are estimates. The agent waits less, down to a fifth, while
	// its waits lately ended at the CDN anyway. Default 2.5s.
	MaxWait time.Duration
	// FarAhead: a request due later than this (a VOD player buffering far
	// ahead) waits for peers until it is due within FarAhead, then
	// MaxWait more: the CDN is for what is due soon. Default 10s.
	FarAhead time.Duration
	// CDNSafety is the time always kept in reserve for a CDN fetch on top of
	// its measured duration, so a segment falls back to the CDN early enough.
	// Default 1s.
	CDNSafety time.Duration

	// LoopbackOnly restricts ICE to loopback addresses (tests and local load
	// generation; native only). Default false.
	LoopbackOnly bool
	// ICENet is the network WebRTC runs on (native only): a pion virtual
	// network in simulations (sim/netsim). Default nil: the host's.
	ICENet transport.Net
	// ICEServers overrides the tracker's ICE servers. Default: the tracker's.
	ICEServers []signaling.ICEServer
	// AllowRelay carries segments over TURN relays. Default false, unless
	// the tracker allows it (allow_relay): the agent drops turn: servers
	// and peers' relay candidates, since a relayed segment costs the TURN
	// server twice its bytes to save the CDN once. Peers a relay would be
	// the only way to reach stay unconnected; the CDN serves those viewers.
	AllowRelay bool
	// HashManifests says whether the CDN publishes hash manifests
	// (peercdn-hashes.json) beside its segments, so that the agent looks
	// for them. Nil: as the tracker's welcome says (Limits.HashManifests).
	HashManifests *bool

	// CDN fetches segments from the CDN. Default natively: net/http's
	// default client; the browser build must set it (wasm/ uses fetch).
	CDN CDN
	// Dial opens the tracker connection. Default natively: signaling.Dial;
	// the browser build must set it (wasm/ uses the page's WebSocket).
	Dial func(ctx context.Context, url, origin string) (*signaling.Client, error)
	// Log receives the agent's logs. Default slog.Default().
	Log *slog.Logger
	// Adversary makes this agent hostile, for load tests only.
	Adversary *Adversary

	// relayOnly gathers relay candidates only (ICE transport policy
	// "relay"): a test's way to need TURN on loopback. Native only.
	relayOnly bool
	// connectTimeout replaces connectTimeout when set: a test's way to see
	// unreachable peers given up on quickly.
	connectTimeout time.Duration

	// uploadStallAfter makes uploads stop after this many bytes of each
	// segment without ending the request: a test's slow or vanishing peer.
	uploadStallAfter int
	// uploadStallFirst holds this many of the agent's first uploads open
	// without sending a byte: a test's peer that was busy once.
	uploadStallFirst int64

	// OnEvent, if set, is called for every Event, from the agent's
	// goroutines: it must not block.
	OnEvent func(Event)
}

// DefaultConfig returns the defaults for a desktop viewer of trackerURL.
func DefaultConfig(trackerURL string) Config {
	c := Config{TrackerURL: trackerURL}
	c.fill()
	return c
}

func (c *Config) fill() {
	if c.MaxPeers == 0 {
		c.MaxPeers = 8
		if c.Mobile {
			c.MaxPeers = 4
		}
	}
	if c.MaxPeerConnections == 0 {
		c.MaxPeerConnections = 300
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = 256 << 20
		if c.Mobile {
			c.CacheBytes = 64 << 20
		}
	}
	if c.P2PStallTimeout == 0 {
		c.P2PStallTimeout = 1500 * time.Millisecond
	}
	if c.MaxWait == 0 {
		c.MaxWait = 2500 * time.Millisecond
	}
	if c.FarAhead == 0 {
		c.FarAhead = 10 * time.Second
	}
	if c.CDNSafety == 0 {
		c.CDNSafety = time.Second
	}
	defaultTransports(c)
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// ErrConfig is wrapped by configuration errors.
var ErrConfig = errors.New("agent: config")

func (c *Config) validate() error {
	switch {
	case c.DialsAtOnce < 0:
		return fmt.Errorf("%w: negative DialsAtOnce", ErrConfig)
	case c.MaxPeers < 0 || c.MaxPeers > 64:
		return fmt.Errorf("%w: MaxPeers %d outside 0..64", ErrConfig, c.MaxPeers)
	case c.MaxPeerConnections < 0 || c.MaxPeerConnections > 500:
		return fmt.Errorf("%w: MaxPeerConnections %d outside 0..500 (browsers cap at 500)", ErrConfig, c.MaxPeerConnections)
	case c.CacheBytes < 1<<20:
		return fmt.Errorf("%w: CacheBytes %d below 1 MiB", ErrConfig, c.CacheBytes)
	case c.UploadBytesPerSecond < 0:
		return fmt.Errorf("%w: negative UploadBytesPerSecond", ErrConfig)
	case c.CDN == nil:
		return fmt.Errorf("%w: no CDN transport: set Config.CDN", ErrConfig)
	case c.Dial == nil && c.TrackerURL != "":
		return fmt.Errorf("%w: no tracker transport: set Config.Dial", ErrConfig)
	}
	return nil
}
