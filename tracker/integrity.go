package tracker

import (
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"

	"github.com/peercdn/peercdn/signaling"
)

// The tracker is where viewers' segment hashes become trusted: a hash is
// accepted once hash_quorum viewers who fetched the segment from the CDN
// themselves (from distinct networks, unless hash_distinct_networks is
// off) report it, and more of them report it than any other hash. No
// single viewer can choose a hash alone. Accepted hashes are pushed to the
// swarm; agents take a peer's bytes only when they match one.

// hashBook holds one swarm's recent segment hashes.
type hashBook struct {
	entries map[uint64]*hashEntry
	order   []uint64 // insertion order, for eviction
}

// hashBookSize bounds the segments a swarm remembers: far more than a live
// window, so late viewers of a recent segment still find its hash.
const hashBookSize = 512

// recentHashes is how many accepted hashes a newcomer is sent on join.
const recentHashes = 32

type hashEntry struct {
	accepted string                     // hex, once trusted
	votes    map[string]map[string]bool // hash -> reporter networks (or ids)
	voters   map[string]string          // peer id -> the hash it reported (one vote each)
	url      string                     // where a reporter got it, under notary_origins
	notary   bool                       // a notary fetch was started
}

// network is what counts as one independent reporter: the /24 (IPv4) or
// /48 (IPv6) of its address, or the peer itself when distinct networks are
// not required.
func (h *hub) network(p *peer) string {
	if !h.cfg.HashDistinctNetworks || p.conn == nil {
		return p.id
	}
	if a, ok := clientAddr(p.conn.ip); ok {
		return networkOf(a).String()
	}
	return p.conn.ip
}

// reportHash records p's CDN hash of seg in swarm k. It returns the hash
// if this report made it trusted (to push to the swarm), and whether the
// report contradicts an already trusted hash (a lie, or a corrupt CDN copy).
func (h *hub) reportHash(p *peer, k swarmKey, seg uint64, sum string) (accepted string, lie bool, code signaling.Code) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, in := p.swarms[k]; !in {
		return "", false, signaling.CodeNotInSwarm
	}
	accepted, lie = h.voteLocked(h.swarms[k], p.id, h.network(p), seg, sum)
	return accepted, lie, ""
}

// contested returns the URL to notarize seg from when its reports
// conflict, no hash is trusted, a reporter gave an allow-listed URL, and no
// notary fetch was started yet (it marks one started).
func (h *hub) contested(k swarmKey, seg uint64, url string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	sw := h.swarms[k]
	if sw == nil || sw.hashes == nil {
		return ""
	}
	e := sw.hashes.entries[seg]
	if e == nil || e.accepted != "" || e.notary {
		return ""
	}
	if e.url == "" && h.notaryAllows(url) {
		e.url = url
	}
	if len(e.votes) < 2 || e.url == "" {
		return ""
	}
	e.notary = true
	return e.url
}

// settle makes the notary's hash trusted and returns the local peers that
// reported another one, removed from the swarm for good.
func (h *hub) settle(k swarmKey, seg uint64, sum string) (accepted bool, liars []*peer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sw := h.swarms[k]
	if sw == nil || sw.hashes == nil {
		return false, nil
	}
	e := sw.hashes.entries[seg]
	if e == nil || e.accepted != "" {
		return false, nil
	}
	e.accepted = sum
	h.m.hashes.Inc()
	for id, reported := range e.voters {
		if reported == sum {
			continue
		}
		if p := h.peers[id]; p != nil {
			if _, in := p.swarms[k]; in {
				h.leaveLocked(p, k)
			}
			if p.banned == nil {
				p.banned = map[swarmKey]bool{}
			}
			p.banned[k] = true
			h.m.banned.Inc()
			liars = append(liars, p)
		}
	}
	return true, liars
}

// notaryAllows says whether raw lies under one of notary_origins: same
// scheme and host, path under the prefix, no user info, no "..".
func (h *hub) notaryAllows(raw string) bool {
	if raw == "" || len(h.cfg.NotaryOrigins) == 0 {
		return false
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Host == "" || strings.Contains(u.Path, "..") {
		return false
	}
	for _, p := range h.cfg.NotaryOrigins {
		a, err := url.Parse(p)
		if err != nil {
			continue
		}
		if a.Scheme == u.Scheme && a.Host == u.Host && strings.HasPrefix(u.Path, a.Path) {
			return true
		}
	}
	return false
}

// remoteVote records a report another node received (clustered nodes
// share every report, so each reaches the quorum on the same votes). It
// returns the hash if the vote made it trusted here.
func (h *hub) remoteVote(k swarmKey, voter, network string, seg uint64, sum string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	sw := h.swarms[k]
	if sw == nil {
		return "" // no viewer of this swarm here
	}
	accepted, _ := h.voteLocked(sw, voter, network, seg, sum)
	return accepted
}

func (h *hub) voteLocked(sw *swarm, voter, network string, seg uint64, sum string) (accepted string, lie bool) {
	if sw.hashes == nil {
		sw.hashes = &hashBook{entries: make(map[uint64]*hashEntry)}
	}
	b := sw.hashes
	e := b.entries[seg]
	if e == nil {
		e = &hashEntry{votes: map[string]map[string]bool{}, voters: map[string]string{}}
		b.entries[seg] = e
		b.order = append(b.order, seg)
		if len(b.order) > hashBookSize {
			delete(b.entries, b.order[0])
			b.order = b.order[1:]
		}
	}
	if e.accepted != "" {
		return "", sum != e.accepted
	}
	if _, voted := e.voters[voter]; voted {
		return "", false // one vote per viewer per segment
	}
	e.voters[voter] = sum
	if e.votes[sum] == nil {
		e.votes[sum] = map[string]bool{}
	}
	e.votes[sum][network] = true
	n := len(e.votes[sum])
	if n < h.cfg.HashQuorum {
		return "", false
	}
	for other, nets := range e.votes {
		if other != sum && len(nets) >= n {
			return "", false // contested: the CDN for everyone until one side leads
		}
	}
	e.accepted = sum
	h.m.hashes.Inc()
	return sum, false
}

// recent returns up to recentHashes accepted hashes of swarm k, newest last.
func (h *hub) recent(k swarmKey) []*signaling.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	sw := h.swarms[k]
	if sw == nil || sw.hashes == nil {
		return nil
	}
	var out []*signaling.Message
	order := sw.hashes.order
	for i := len(order) - 1; i >= 0 && len(out) < recentHashes; i-- {
		if e := sw.hashes.entries[order[i]]; e.accepted != "" {
			out = append(out, hashMessage(k, order[i], e.accepted))
		}
	}
	return out
}

func hashMessage(k swarmKey, seg uint64, sum string) *signaling.Message {
	sw := k.swarm
	return &signaling.Message{Type: signaling.TypeHash, Swarm: &sw, Segment: strconv.FormatUint(seg, 10), SHA256: sum}
}

// membersOf returns this node's members of swarm k.
func (h *hub) membersOf(k swarmKey) []*peer {
	h.mu.Lock()
	defer h.mu.Unlock()
	sw := h.swarms[k]
	if sw == nil {
		return nil
	}
	return append([]*peer(nil), sw.members...)
}

// reportPeer counts reporter's complaint that target sent bytes that failed
// verification in swarm k. When bad_peer_reports distinct peers have
// complained, the target is removed from the swarm and may not rejoin it.
func (h *hub) reportPeer(reporter *peer, k swarmKey, target string) (removed *peer, code signaling.Code) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, in := reporter.swarms[k]; !in {
		return nil, signaling.CodeNotInSwarm
	}
	t := h.peers[target]
	if t == nil || t == reporter {
		return nil, signaling.CodeUnknownPeer
	}
	if _, in := t.swarms[k]; !in {
		return nil, signaling.CodeUnknownPeer
	}
	if t.reports == nil {
		t.reports = map[swarmKey]map[string]bool{}
	}
	if t.reports[k] == nil {
		t.reports[k] = map[string]bool{}
	}
	t.reports[k][reporter.id] = true
	if len(t.reports[k]) < h.cfg.BadPeerReports {
		return nil, ""
	}
	h.leaveLocked(t, k)
	if t.banned == nil {
		t.banned = map[swarmKey]bool{}
	}
	t.banned[k] = true
	h.m.banned.Inc()
	return t, ""
}

// validHash parses a reported hash; Decode already checked its form.
func validHash(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}
