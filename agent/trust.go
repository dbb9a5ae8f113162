package agent

import (
	"sync"

	"github.com/peercdn/peercdn/signaling"
)

// trust holds the hashes a segment's bytes are checked against and owns
// their order, strongest first:
//
//  1. the origin's hash manifest (manifest.go): the CDN's own word;
//  2. the tracker's notary: the hash of what the tracker fetched itself
//     from the CDN origin this agent fetches the segment from (a notary
//     hash for another origin says nothing about this one);
//  3. the viewers' quorum, only where the tracker runs one, and only while
//     nothing stronger exists, no manifest may (the folder publishes
//     none), and this agent's own CDN copy has not contradicted it.
//
// A stronger hash always replaces a weaker one, whatever arrived first.
type trust struct {
	mu    sync.Mutex
	m     map[segKey]*vouch
	order []segKey // insertion order, for eviction past maxHashes
}

// maxHashes bounds the segments an agent remembers hashes of.
const maxHashes = 4096

// vouch is what is known of one segment's hash.
type vouch struct {
	manifest    [32]byte
	hasManifest bool
	notary      map[string][32]byte // by CDN origin
	quorum      [32]byte
	hasQuorum   bool
	// disputed: this agent's own CDN copy contradicted the quorum's hash,
	// evidence against the reporters, not the CDN: the quorum's word on
	// this segment counts for nothing here.
	disputed bool
}

// level is how a hash came to be trusted.
type level int8

const (
	untrusted level = iota
	byQuorum
	byNotary
	byManifest
)

func newTrust() *trust { return &trust{m: make(map[segKey]*vouch)} }

func (t *trust) entryLocked(k segKey) *vouch {
	v := t.m[k]
	if v == nil {
		v = &vouch{}
		t.m[k] = v
		t.order = append(t.order, k)
		if len(t.order) > maxHashes {
			delete(t.m, t.order[0])
			t.order = t.order[1:]
		}
	}
	return v
}

func (t *trust) learnManifest(k segKey, sum [32]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.entryLocked(k)
	v.manifest, v.hasManifest = sum, true
}

// maxNotaryCDNs bounds the CDNs remembered per segment.
const maxNotaryCDNs = 8

func (t *trust) learnNotary(k segKey, cdn string, sum [32]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.entryLocked(k)
	if v.notary == nil {
		v.notary = map[string][32]byte{}
	}
	if _, ok := v.notary[cdn]; ok || len(v.notary) < maxNotaryCDNs {
		v.notary[cdn] = sum
	}
}

func (t *trust) learnQuorum(k segKey, sum [32]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.entryLocked(k)
	if !v.hasQuorum {
		v.quorum, v.hasQuorum = sum, true
	}
}

// dispute records that this agent's own CDN copy of k contradicts the
// quorum's hash.
func (t *trust) dispute(k segKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entryLocked(k).disputed = true
}

// best returns the strongest hash a copy of k fetched from url must have.
// quorumOK says whether the quorum's word may count (quorum integrity, and
// the folder publishes no manifest).
func (t *trust) best(k segKey, url string, quorumOK bool) ([32]byte, level) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.m[k]
	switch {
	case v == nil:
		return [32]byte{}, untrusted
	case v.hasManifest:
		return v.manifest, byManifest
	}
	if cdn, ok := signaling.CDNOrigin(url); ok {
		if sum, ok := v.notary[cdn]; ok {
			return sum, byNotary
		}
	}
	if quorumOK && v.hasQuorum && !v.disputed {
		return v.quorum, byQuorum
	}
	return [32]byte{}, untrusted
}
