// Package cluster is the store the nodes of one tracker deployment share:
// swarm membership, a message bus between nodes, every node's figures and
// the operator's rollout, behind small interfaces. Memory keeps it in
// process (one node, or tests); Redis spreads it over many nodes. Only
// this package imports go-redis.
package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"time"

	"github.com/peercdn/peercdn/signaling"
)

// Key names a swarm across the cluster: the page origin its viewers came
// from (swarms of different sites never mix) and the swarm itself.
type Key struct {
	Origin string
	Swarm  signaling.Swarm
}

// Membership is who is in which swarm, on any node.
type Membership interface {
	// Node is this node's id: NodeIDLen characters that prefix every peer id
	// the node assigns, so any node can tell where a peer is connected
	// without a lookup.
	Node() string
	// Join records m in swarm k and returns up to n members of k (on any
	// node, m excluded), alive at the time of the call: members of m's
	// network group first (half of n at most, their Group set), then
	// others.
	Join(ctx context.Context, k Key, m Member, n int) ([]Member, error)
	// Sample returns up to n live members of k, those of group first as
	// Join does ("": no group).
	Sample(ctx context.Context, k Key, group string, n int) ([]Member, error)
	// Counts returns how many live members each of keys has, and how many
	// of them are seeds: the swarm sizes a WebTorrent announce and scrape
	// report, which must count every node's peers.
	Counts(ctx context.Context, keys []Key) ([]SwarmCount, error)
	// Leave removes m (its ID, from its Group too) from k.
	Leave(ctx context.Context, k Key, m Member) error
	// Refresh re-announces every member this node holds, pushing their
	// expiry forward: a node that stops refreshing (crashed, cut off) loses
	// its members after MemberTTL.
	Refresh(ctx context.Context, members map[Key][]Member) error
}

// Bus carries relayed messages to the node a peer is connected to.
type Bus interface {
	// Publish hands e to node's inbox. Delivery is at most once: a message to
	// a node that is gone is lost, as a relayed message to a peer that just
	// left is.
	Publish(ctx context.Context, node string, e *Envelope) error
	// Broadcast hands e to every other node (hash reports: each node counts
	// every vote). At most once, like Publish.
	Broadcast(ctx context.Context, e *Envelope) error
	// Inbox yields the envelopes published to this node until Close.
	Inbox() <-chan *Envelope
}

// StatsStore keeps every node's figures for the cluster-wide dashboard.
type StatsStore interface {
	// PutStats keeps this node's figures (its /stats.json, encoded) for
	// ttl, in place of the last.
	PutStats(ctx context.Context, stats []byte, ttl time.Duration) error
	// NodeStats returns the figures of every node whose last PutStats has
	// not expired (this node's included), MaxStatsNodes at most.
	NodeStats(ctx context.Context) ([][]byte, error)
}

// RolloutStore keeps the operator's rollout for every node.
type RolloutStore interface {
	// SetRollout stores the operator's rollout (encoded) for every node;
	// nodes read it with Rollout every second or so. With ifAbsent it
	// stores only where none is, and says whether it did.
	SetRollout(ctx context.Context, rollout []byte, ifAbsent bool) (bool, error)
	// Rollout returns the stored rollout; ok is false if none was set (or
	// the store lost it: then nodes keep what they have).
	Rollout(ctx context.Context) (rollout []byte, ok bool, err error)
}

// Cluster is what the nodes of one tracker deployment share. A node
// without one is a cluster of one; its hub is then the whole truth.
// Implementations: Memory (in-process nodes, tests) and Redis.
//
// Every method may fail (the shared store is down); the node then keeps
// serving its own viewers from its hub and says so in /readyz and metrics.
type Cluster interface {
	Membership
	Bus
	StatsStore
	RolloutStore
	// Up reports whether the shared store answered its last health check.
	Up() bool
	Close() error
}

// MaxStatsNodes bounds the nodes NodeStats returns.
const MaxStatsNodes = 256

// ErrConfig is wrapped by errors in a store's options.
var ErrConfig = errors.New("cluster: config")

// Member is one peer in one swarm as the cluster knows it.
type Member struct {
	ID    string
	Slots int // free connection slots the agent declared, capped at MaxSlots
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

// Leechers is the members that are not seeds (WebTorrent's "incomplete").
func (c SwarmCount) Leechers() int { return max(c.Members-c.Seeds, 0) }

// MaxSlots caps the slots a member carries through the cluster: beyond it a
// peer is simply "free".
const MaxSlots = 63

// NodeIDLen is the length of a node id, and of the prefix of its peer ids.
const NodeIDLen = 8

// NewNodeID returns a random node id (base32, 40 bits: collisions between
// the nodes of one deployment are negligible).
func NewNodeID() string { return rand.Text()[:NodeIDLen] }

// NodeOf returns the node a peer id was assigned by.
func NodeOf(id string) string {
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

// EnvelopeSwarm is a Key on the wire.
type EnvelopeSwarm struct {
	Origin    string `json:"o,omitempty"`
	Content   string `json:"c"`
	Rendition string `json:"r,omitempty"`
}

func (k Key) Wire() EnvelopeSwarm {
	return EnvelopeSwarm{Origin: k.Origin, Content: k.Swarm.Content, Rendition: k.Swarm.Rendition}
}

// Key is the swarm e names.
func (e EnvelopeSwarm) Key() Key {
	return Key{Origin: e.Origin, Swarm: signaling.Swarm{Content: e.Content, Rendition: e.Rendition}}
}
