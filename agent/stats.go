package agent

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peercdn/peercdn/signaling"
)

// Source says where a segment's bytes came from.
type Source string

// Sources.
const (
	SourceCache Source = "cache"
	SourceCDN   Source = "cdn"
	SourceP2P   Source = "p2p"
	SourceMixed Source = "p2p+cdn" // started from a peer, completed from the CDN
)

// Stats are the agent's counters since it started.
type Stats struct {
	// Control: the tracker's rollout keeps this viewer off P2P (its
	// control cohort), so everything comes from the CDN.
	Control     bool  `json:"control"`
	CDNBytes    int64 `json:"cdnBytes"`
	P2PBytes    int64 `json:"p2pBytes"`
	UploadBytes int64 `json:"uploadBytes"`
	// Peers counts the distinct viewers connected, over all swarms.
	Peers int `json:"peers"`
	// PeerConnections counts connections created, against MaxPeerConnections.
	PeerConnections int `json:"peerConnections"`
	// PeersConnected counts connections that opened; PeersFailed those
	// negotiated (offer and answer exchanged) that never did: the share
	// NAT and firewalls cost.
	PeersConnected int64 `json:"peersConnected"`
	PeersFailed    int64 `json:"peersFailed"`
	Segments       int   `json:"segments"`
	P2PFailures    int64 `json:"p2pFailures"`
	Prefetched     int64 `json:"prefetched"` // segments fetched ahead from peers
	// Corrupt counts segments from peers that failed verification (each
	// dropped its sender).
	Corrupt int64 `json:"corrupt"`
	// Flooders counts peers dropped for sending over the peer-side limits.
	Flooders int64 `json:"flooders"`
	// UploadsRefused counts peers' requests refused because the uplink's
	// backlog would not drain in time (uplink.admit): they went to other
	// holders.
	UploadsRefused int64 `json:"uploadsRefused"`
	// P2PWastedBytes counts bytes received from peers that never reached
	// the player: transfers given up without a CDN range to complete them,
	// chunks still in flight after a cancel, copies that failed their
	// check. (A transfer completed from the CDN wastes nothing: its bytes
	// are counted in P2PBytes.)
	P2PWastedBytes int64 `json:"p2pWastedBytes"`
	Stalls         int   `json:"stalls"`
	StallMs        int64 `json:"stallMs"`
}

// SegmentRecord is one loaded segment in the per-segment log.
type SegmentRecord struct {
	Seq      uint64        `json:"seq"`
	Source   Source        `json:"source"`
	Bytes    int           `json:"bytes"`
	Duration time.Duration `json:"durationNs"`
	At       time.Time     `json:"at"`
	// Why says why a CDN load went to the CDN (see the Why constants).
	Why string `json:"why,omitempty"`
}

// Why a segment came from the CDN.
const (
	WhyDue      = "due"      // too close to its deadline for a peer (startup, or waited until then)
	WhyElected  = "elected"  // this viewer seeds it for its neighbourhood
	WhyTakeover = "takeover" // next in line, it seeds it: the viewer elected had not asked for it
	WhyWaited   = "waited"   // no peer had it after MaxWait
	WhyAlone    = "alone"    // no peer connected
	WhyOff      = "off"      // P2P off for this viewer or swarm
)

// Event is something a page or a load test may want to see as it happens.
type Event struct {
	Kind    EventKind      `json:"kind"`
	Peer    string         `json:"peer,omitempty"`    // peer and upload events
	Segment *SegmentRecord `json:"segment,omitempty"` // segment events
	// Reason says why: a peer connection failed or ended, the tracker
	// connection failed or ended.
	Reason string `json:"reason,omitempty"`
	// RetryMs: the agent reconnects to the tracker after this long.
	RetryMs int64 `json:"retryMs,omitempty"`
	// Seq and Bytes: the segment a peer was sent, and how much of it.
	Seq   uint64 `json:"seq,omitempty"`
	Bytes int    `json:"bytes,omitempty"`
	// P2P: the tracker's rollout turned P2P on (true) or off for this
	// viewer (the kill switch, or the control cohort).
	P2P *bool `json:"p2p,omitempty"`
}

// EventKind names an event.
type EventKind string

// Event kinds.
const (
	EventSegment EventKind = "segment"
	EventPeerUp  EventKind = "peer-connected"
	// EventPeerGone: a connected peer's connection ended, with the Reason
	// (the Gone constants).
	EventPeerGone EventKind = "peer-gone"
	// EventPeerDropped: a peer sent a segment that failed verification.
	EventPeerDropped EventKind = "peer-dropped"
	// EventPeerFailed: a negotiated connection never opened (NAT,
	// firewall), with the Reason.
	EventPeerFailed EventKind = "peer-failed"
	// EventUpload: a peer was sent Bytes of segment Seq.
	EventUpload EventKind = "upload"
	// EventTrackerUp: connected to the tracker (again).
	EventTrackerUp EventKind = "tracker-connected"
	// EventTrackerDown: the tracker connection ended or could not be made
	// (Reason); the agent tries again after RetryMs.
	EventTrackerDown EventKind = "tracker-disconnected"
	// EventRollout: the tracker's rollout turned P2P on or off (P2P).
	EventRollout EventKind = "rollout"
)

// maxRecords bounds the per-segment log so long live sessions do not grow.
const maxRecords = 1024

type counters struct {
	cdn, p2p, up, failures, prefetched, corrupt, flooders, uploadsRefused, wasted atomic.Int64
	segments                                                                      atomic.Int64
	peersConnected, peersFailed                                                   atomic.Int64
	// trickled: ICE candidates sent on their own, after the description
	// (candidate.go).
	trickled atomic.Int64

	mu      sync.Mutex
	records []SegmentRecord
	stalls  int
	stallMs int64
	// reported is what the tracker has been told (usage); playerCDN counts
	// segments the page's player got from the CDN without the agent (before
	// it was ready, or when it was too slow): the tracker must see them.
	reported  signaling.Usage
	playerCDN int64
	// unacked holds reports sent on the current tracker connection that
	// its pong has not acknowledged yet, oldest first, maxUnacked at most.
	// conn numbers that connection (0: none); conns counts them all.
	unacked     []sentReport
	conn, conns uint64
}

type sentReport struct {
	ref string
	u   signaling.Usage
}

// maxUnacked bounds the reports kept for requeue: beyond it the oldest is
// taken as counted (a tracker that never answers does not grow the list).
const maxUnacked = 8

// open starts the reports of a new tracker connection and returns its
// number, for usage.
func (c *counters) open() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conns++
	c.conn = c.conns
	return c.conn
}

// usage returns what the player got since the last call, for the tracker's
// per-swarm offload and rebuffering figures, to be sent in the ping ref on
// connection conn; nil when nothing changed, or when conn has ended: a
// heartbeat racing its connection's end must not take bytes that requeue
// has already handed to the next connection, where its ref ("k3") would
// be acknowledged by that connection's own k3. Until ack(ref), the report
// is the agent's to send again (requeue).
func (c *counters) usage(conn uint64, ref string) *signaling.Usage {
	cur := signaling.Usage{CDNBytes: c.cdn.Load(), P2PBytes: c.p2p.Load(), UploadBytes: c.up.Load(),
		PeersConnected: c.peersConnected.Load(), PeersFailed: c.peersFailed.Load()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn != c.conn {
		return nil
	}
	cur.CDNBytes += c.playerCDN
	cur.StallMs = c.stallMs
	d := cur.Minus(c.reported)
	c.reported = cur
	if d.Empty() {
		return nil
	}
	if len(c.unacked) == maxUnacked {
		c.unacked = slices.Delete(c.unacked, 0, 1)
	}
	c.unacked = append(c.unacked, sentReport{ref, d})
	return &d
}

// usageNow is usage on the current connection; nil while there is none.
func (c *counters) usageNow(ref string) *signaling.Usage {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == 0 {
		return nil
	}
	return c.usage(conn, ref)
}

// ack records that the tracker counted the report sent with ref.
func (c *counters) ack(ref string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unacked = slices.DeleteFunc(c.unacked, func(r sentReport) bool { return r.ref == ref })
}

// requeue ends the current tracker connection's reports and hands those
// the tracker did not acknowledge back to the next connection: a report in
// flight when a connection breaks is not lost. (The tracker may have
// counted one whose pong was lost: counted twice, rarely, rather than lost
// whenever a connection dies silently.)
func (c *counters) requeue() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn = 0
	for _, r := range c.unacked {
		c.reported = c.reported.Minus(r.u)
	}
	c.unacked = c.unacked[:0]
}

func (c *counters) record(r SegmentRecord) {
	c.segments.Add(1)
	c.mu.Lock()
	if len(c.records) == maxRecords {
		copy(c.records, c.records[1:])
		c.records = c.records[:maxRecords-1]
	}
	c.records = append(c.records, r)
	c.mu.Unlock()
}
