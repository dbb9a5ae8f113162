package tracker

import (
	"context"
	"crypto/rand"
	"time"

	"github.com/peercdn/peercdn/signaling"
)

// Cluster is what the nodes of one tracker deployment share: who is in which
// swarm on any node, and a bus that carries relayed messages to the node a
// peer is connected to. A node without one is a cluster of one; its hub is
// then the whole truth. Implementations: MemoryCluster (in-process nodes,
// tests) and RedisCluster.
//
// Every method may fail (the shared store is down); the node then keeps
// serving its own viewers from its hub and says so in /readyz and metrics.
type Cluster interface {
	// Node is this node's id: NodeIDLen characters that prefix every peer id
	// the node assigns, so any node can tell where a peer is connected
	// without a lookup.
	Node() string
	// Join records m in swarm k and returns up to n members of k (on any
	// node, m excluded), alive at the time of the call: members of m's
	// network group first (half of n at most, their Group set), then
	// others.
	Join(ctx context.Context, k swarmKey, m Member, n int) ([]Member, error)
	// Sample returns up to n live members of k, those of group first as
	// Join does ("": no group).
	Sample(ctx context.Context, k swarmKey, group string, n int) ([]Member, error)
	// Counts returns how many live members each of keys has, and how many
	// of them are seeds: the swarm sizes a WebTorrent announce and scrape
	// report, which must count every node's peers.
	Counts(ctx context.Context, keys []swarmKey) ([]SwarmCount, error)
	// Leave removes m (its ID, from its Group too) from k.
	Leave(ctx context.Context, k swarmKey, m Member) error
	// Refresh re-announces every member this node holds, pushing their
	// expiry forward: a node that stops refreshing (crashed, cut off) loses
	// its members after MemberTTL.
	Refresh(ctx context.Context, members map[swarmKey][]Member) error
	// Publish hands e to node's inbox. Delivery is at most once: a message to
	// a node that is gone is lost, as a relayed message to a peer that just
	// left is.
	Publish(ctx context.Context, node string, e *Envelope) error
	// Broadcast hands e to every other node (hash reports: each node counts
	// every vote). At most once, like Publish.
	Broadcast(ctx context.Context, e *Envelope) error
	// PutStats keeps this node's figures (its /stats.json, encoded) for
	// ttl, in place of the last.
	PutStats(ctx context.Context, stats []byte, ttl time.Duration) error
	// NodeStats returns the figures of every node whose last PutStats has
	// not expired (this node's included), maxStatsNodes at most.
	NodeStats(ctx context.Context) ([][]byte, error)
	// SetRollout stores the operator's rollout (a Rollout, encoded) for
	// every node; nodes read it with Rollout every second or so. With
	// ifAbsent it stores only where none is, and says whether it did.
	SetRollout(ctx context.Context, rollout []byte, ifAbsent bool) (bool, error)
	// Rollout returns the stored rollout; ok is false if none was set (or
	// the store lost it: then nodes keep what they have).
	Rollout(ctx context.Context) (rollout []byte, ok bool, err error)
	// Inbox yields the envelopes published to this node until Close.
	Inbox() <-chan *Envelope
	// Up reports whether the shared store answered its last health check.
	Up() bool
	Close() error
}

// Member is one peer in one swarm as the cluster knows it.
type Member struct {
	ID    string
	Slots int // free connection slots the agent declared, capped at maxSlots
	// Seed marks a WebTorrent peer that has the whole torrent (its
	// "completed" event): scrape and announce count it as complete.
	Seed bool
	// Group is the peer's network group (proximity.go), so that nodes
	// match neighbours connected to other nodes too. Members that Join and
	// Sample return carry it only when it is the group asked for.
	Group string
}

// SwarmCount is a swarm's size across the cluster.
type SwarmCount struct{ Members, Seeds int }

// leechers is the members that are not seeds (WebTorrent's "incomplete").
func (c SwarmCount) leechers() int { return max(c.Members-c.Seeds, 0) }

// maxSlots caps the slots a member carries through the cluster: beyond it a
// peer is simply "free".
const maxSlots = 63

// NodeIDLen is the length of a node id, and of the prefix of its peer ids.
const NodeIDLen = 8

// newNodeID returns a random node id (base32, 40 bits: collisions between
// the nodes of one deployment are negligible).
func newNodeID() string { return rand.Text()[:NodeIDLen] }

// nodeOf returns the node a peer id was assigned by.
func nodeOf(id string) string {
	if len(id) <= NodeIDLen {
		return ""
	}
	return id[:NodeIDLen]
}

// Envelope is a relayed message on its way between nodes: the original
// message with the sender as the tracker authenticated it, or an error for
// a sender whose message could not be delivered.
type Envelope struct {
	Swarm    EnvelopeSwarm  `json:"s"`
	Type     signaling.Type `json:"t"`
	From     string         `json:"f"`
	To       string         `json:"to"`
	OfferID  string         `json:"o,omitempty"`
	SDP      string         `json:"sdp,omitempty"`
	Cand     string         `json:"c,omitempty"`
	Ref      string         `json:"r,omitempty"`    // the sender's ref, for errors sent back
	Code     signaling.Code `json:"code,omitempty"` // set on errors sent back to From's node
	SentUnix int64          `json:"at"`             // unix ns when the first node read it
	// Hash votes (Type hash): the segment, its SHA-256, the reporter's
	// network key, and the node that sent the vote (skipped by itself).
	Segment string `json:"seg,omitempty"`
	SHA256  string `json:"sha,omitempty"`
	Net     string `json:"net,omitempty"`
	Node    string `json:"node,omitempty"`
	// CDN is set on a notary's hash (Type hash, From empty): the CDN
	// origin it fetched the segment from.
	CDN string `json:"cdn,omitempty"`
}

// EnvelopeSwarm is a swarmKey on the wire.
type EnvelopeSwarm struct {
	Origin    string `json:"o,omitempty"`
	Content   string `json:"c"`
	Rendition string `json:"r,omitempty"`
}

func (k swarmKey) wire() EnvelopeSwarm {
	return EnvelopeSwarm{Origin: k.origin, Content: k.swarm.Content, Rendition: k.swarm.Rendition}
}

func (e EnvelopeSwarm) key() swarmKey {
	return swarmKey{origin: e.Origin, swarm: signaling.Swarm{Content: e.Content, Rendition: e.Rendition}}
}

// clusterTimeout bounds one call to the shared store on a client's path:
// past it the node answers from its own hub.
const clusterTimeout = 250 * time.Millisecond
