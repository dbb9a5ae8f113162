package agent

import (
	"container/list"
	"sync"

	"github.com/peercdn/peercdn/signaling"
)

// segKey names a segment: its swarm and a number players agree on (see
// SegmentByURL).
type segKey struct {
	swarm signaling.Swarm
	seq   uint64
}

// cache holds whole segments only, bounded in bytes, least recently used
// first out. The agent announces a segment when it enters and withdraws it
// when it leaves.
type cache struct {
	limit int64

	mu    sync.Mutex
	size  int64
	items map[segKey]*list.Element
	lru   list.List // front = most recent; values are *entry
}

type entry struct {
	key  segKey
	data []byte
}

func newCache(limit int64) *cache {
	return &cache{limit: limit, items: make(map[segKey]*list.Element)}
}

func (c *cache) get(k segKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*entry).data, true
}

func (c *cache) has(k segKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.items[k]
	return ok
}

// put stores data (which the cache then owns) and returns the keys evicted
// to make room. A segment larger than the whole cache is not stored.
func (c *cache) put(k segKey, data []byte) (added bool, evicted []segKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok || int64(len(data)) > c.limit {
		return false, nil
	}
	c.items[k] = c.lru.PushFront(&entry{key: k, data: data})
	c.size += int64(len(data))
	for c.size > c.limit {
		e := c.lru.Back()
		evicted = append(evicted, c.removeLocked(e))
	}
	return true, evicted
}

// evict drops the segments seqs of a swarm that it holds and returns
// those.
func (c *cache) evict(sw signaling.Swarm, seqs []uint64) (gone []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, seq := range seqs {
		if e, ok := c.items[segKey{sw, seq}]; ok {
			c.removeLocked(e)
			gone = append(gone, seq)
		}
	}
	return gone
}

func (c *cache) removeLocked(e *list.Element) segKey {
	en := c.lru.Remove(e).(*entry)
	delete(c.items, en.key)
	c.size -= int64(len(en.data))
	return en.key
}

// seqs lists the cached segments of a swarm.
func (c *cache) seqs(sw signaling.Swarm) []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []uint64
	for k := range c.items {
		if k.swarm == sw {
			out = append(out, k.seq)
		}
	}
	return out
}

func (c *cache) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}
