package cluster

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Memory joins tracker nodes of one process into a cluster, with the same
// semantics as Redis (member expiry, at-most-once bus, outages). It is
// how the cross-node logic is tested without a network, and a reference for
// other stores.
type Memory struct {
	ttl time.Duration

	mu     sync.Mutex
	down   bool
	swarms map[Key]map[string]memMember
	inbox  map[string]chan *Envelope
	stats  map[string]memStats // by node
	// rollout is the stored rollout, nil when none.
	rollout []byte
}

type memStats struct {
	b      []byte
	expiry time.Time
}

type memMember struct {
	slots  int
	seed   bool
	group  string
	expiry time.Time
}

// ErrDown is returned by a Memory switched off with SetDown.
var ErrDown = errors.New("cluster: store unreachable")

// NewMemory returns an empty cluster whose members expire ttl after
// their last refresh.
func NewMemory(ttl time.Duration) *Memory {
	return &Memory{ttl: ttl, swarms: make(map[Key]map[string]memMember), inbox: make(map[string]chan *Envelope),
		stats: make(map[string]memStats)}
}

// SetDown simulates the shared store going away (true) and coming back
// empty (false), as a restarted Redis without persistence does.
func (mc *Memory) SetDown(down bool) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	mc.down = down
	if !down {
		mc.swarms = make(map[Key]map[string]memMember)
		mc.stats = make(map[string]memStats)
		mc.rollout = nil
	}
}

// Node returns a handle for one new node.
func (mc *Memory) Node() Cluster {
	id := NewNodeID()
	ch := make(chan *Envelope, 4096)
	mc.mu.Lock()
	mc.inbox[id] = ch
	mc.mu.Unlock()
	return &memNode{mc: mc, id: id, ch: ch}
}

type memNode struct {
	mc   *Memory
	id   string
	ch   chan *Envelope
	once sync.Once
}

func (n *memNode) Node() string { return n.id }

func (n *memNode) Up() bool {
	n.mc.mu.Lock()
	defer n.mc.mu.Unlock()
	return !n.mc.down
}

func (n *memNode) Join(ctx context.Context, k Key, m Member, want int) ([]Member, error) {
	mc := n.mc
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if mc.down {
		return nil, ErrDown
	}
	sw := mc.swarms[k]
	if sw == nil {
		sw = make(map[string]memMember)
		mc.swarms[k] = sw
	}
	sw[m.ID] = memMember{slots: min(m.Slots, MaxSlots), seed: m.Seed, group: m.Group, expiry: time.Now().Add(mc.ttl)}
	return mc.sampleLocked(k, m.Group, want, m.ID), nil
}

func (n *memNode) Counts(ctx context.Context, keys []Key) ([]SwarmCount, error) {
	mc := n.mc
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if mc.down {
		return nil, ErrDown
	}
	now := time.Now()
	out := make([]SwarmCount, len(keys))
	for i, k := range keys {
		for _, m := range mc.swarms[k] {
			if now.Before(m.expiry) {
				out[i].Members++
				if m.seed {
					out[i].Seeds++
				}
			}
		}
	}
	return out, nil
}

func (n *memNode) Sample(ctx context.Context, k Key, group string, want int) ([]Member, error) {
	mc := n.mc
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if mc.down {
		return nil, ErrDown
	}
	return mc.sampleLocked(k, group, want, ""), nil
}

// sampleLocked picks up to want live members of k, those of group first
// (half at most), as Redis does.
func (mc *Memory) sampleLocked(k Key, group string, want int, skip string) []Member {
	now := time.Now()
	var near, rest []Member
	for id, m := range mc.swarms[k] { // map order is random: a fair sample
		if id == skip || !now.Before(m.expiry) {
			continue
		}
		if group != "" && m.group == group {
			near = append(near, Member{ID: id, Slots: m.slots, Group: group})
		} else {
			rest = append(rest, Member{ID: id, Slots: m.slots})
		}
	}
	rand.Shuffle(len(near), func(i, j int) { near[i], near[j] = near[j], near[i] })
	out := slices.Clone(near[:min(len(near), want/2)])
	rest = append(rest, near[len(out):]...) // the group's beyond half compete with the rest
	rand.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	for _, m := range rest {
		if len(out) >= want {
			break
		}
		m.Group = ""
		out = append(out, m)
	}
	return out
}

func (n *memNode) Leave(ctx context.Context, k Key, m Member) error {
	mc := n.mc
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if mc.down {
		return ErrDown
	}
	if sw := mc.swarms[k]; sw != nil {
		delete(sw, m.ID)
		if len(sw) == 0 {
			delete(mc.swarms, k)
		}
	}
	return nil
}

func (n *memNode) Refresh(ctx context.Context, members map[Key][]Member) error {
	mc := n.mc
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if mc.down {
		return ErrDown
	}
	now := time.Now()
	exp := now.Add(mc.ttl)
	for k, ms := range members {
		sw := mc.swarms[k]
		if sw == nil {
			sw = make(map[string]memMember)
			mc.swarms[k] = sw
		}
		for _, m := range ms {
			sw[m.ID] = memMember{slots: min(m.Slots, MaxSlots), seed: m.Seed, group: m.Group, expiry: exp}
		}
	}
	for k, sw := range mc.swarms {
		for id, m := range sw {
			if !now.Before(m.expiry) {
				delete(sw, id)
			}
		}
		if len(sw) == 0 {
			delete(mc.swarms, k)
		}
	}
	return nil
}

func (n *memNode) Publish(ctx context.Context, node string, e *Envelope) error {
	mc := n.mc
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if mc.down {
		return ErrDown
	}
	ch := mc.inbox[node]
	if ch == nil {
		return nil // a node that is gone: lost, like any at-most-once message
	}
	select {
	case ch <- e:
	default: // inbox full: dropped, as Redis drops for a slow subscriber
	}
	return nil
}

func (n *memNode) Broadcast(ctx context.Context, e *Envelope) error {
	mc := n.mc
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if mc.down {
		return ErrDown
	}
	for id, ch := range mc.inbox {
		if id == n.id {
			continue
		}
		select {
		case ch <- e:
		default:
		}
	}
	return nil
}

func (n *memNode) PutStats(ctx context.Context, b []byte, ttl time.Duration) error {
	n.mc.mu.Lock()
	defer n.mc.mu.Unlock()
	if n.mc.down {
		return ErrDown
	}
	n.mc.stats[n.id] = memStats{b: slices.Clone(b), expiry: time.Now().Add(ttl)}
	return nil
}

func (n *memNode) NodeStats(ctx context.Context) ([][]byte, error) {
	n.mc.mu.Lock()
	defer n.mc.mu.Unlock()
	if n.mc.down {
		return nil, ErrDown
	}
	now := time.Now()
	var out [][]byte
	for id, st := range n.mc.stats {
		switch {
		case now.After(st.expiry):
			delete(n.mc.stats, id)
		case len(out) < MaxStatsNodes:
			out = append(out, st.b)
		}
	}
	return out, nil
}

func (n *memNode) SetRollout(ctx context.Context, b []byte, ifAbsent bool) (bool, error) {
	n.mc.mu.Lock()
	defer n.mc.mu.Unlock()
	if n.mc.down {
		return false, ErrDown
	}
	if ifAbsent && n.mc.rollout != nil {
		return false, nil
	}
	n.mc.rollout = slices.Clone(b)
	return true, nil
}

func (n *memNode) Rollout(ctx context.Context) ([]byte, bool, error) {
	n.mc.mu.Lock()
	defer n.mc.mu.Unlock()
	if n.mc.down {
		return nil, false, ErrDown
	}
	return slices.Clone(n.mc.rollout), n.mc.rollout != nil, nil
}

func (n *memNode) Inbox() <-chan *Envelope { return n.ch }

// Close removes the node; its members stay until they expire, as a crashed
// node's would.
func (n *memNode) Close() error {
	n.once.Do(func() {
		n.mc.mu.Lock()
		delete(n.mc.inbox, n.id)
		n.mc.mu.Unlock()
		close(n.ch)
	})
	return nil
}
