package tracker

import (
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/cluster"
)

// The tracker is where segment hashes become trusted when the origin
// publishes no hash manifest (agents prefer the manifest whenever there is
// one). Two ways, by Config.Integrity:
//
//   - notary (the default): the first viewer to fetch a segment from the
//     CDN reports its hash and URL; the tracker fetches that URL itself
//     (notary.go) and vouches for the hash of what it got, bound to that
//     URL's CDN origin. Agents accept it only for segments they would fetch
//     from the same origin, so a viewer naming a server of its own vouches
//     for nobody else's. Reporters of another hash are removed from the
//     swarm. No number of colluding viewers changes what is vouched.
//   - quorum: a hash is accepted once hash_quorum viewers who fetched the
//     segment themselves (from distinct networks, unless
//     hash_distinct_networks is off) report it and more report it than any
//     other hash. K colluders in K networks, K >= hash_quorum, can win a
//     segment nobody else reported first: an opt-in for trackers that
//     cannot reach the CDN.
//
// Vouched hashes are pushed to the swarm; agents take a peer's bytes only
// when they match one.

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
	voters map[string]string // peer id -> the hash it reported (one report each)

	// Quorum integrity.
	accepted string                     // hex, once trusted
	votes    map[string]map[string]bool // hash -> reporter networks (or ids)
	src      signaling.Source           // where a reporter got it, under notary_cdns
	notary   bool                       // a notary fetch was started

	// Notary integrity: what the notary found at each CDN origin.
	checks map[string]*originCheck
}

// originCheck is the notary's work on one segment at one CDN origin.
type originCheck struct {
	sum      string    // the notary's hash, once fetched
	fetching bool      // a fetch is queued or running
	retryAt  time.Time // after a failed fetch, none starts before this
	// pending are the hashes reported before the notary's (peer id -> hash),
	// judged when it arrives.
	pending map[string]string
}

const (
	// maxOriginsPerSegment bounds the CDN origins checked per segment
	// (several CDNs of one title): past it, a check that has found nothing
	// makes way for a new one, so reports naming made-up servers cannot
	// keep a real CDN's check out.
	maxOriginsPerSegment = 16
	// maxPendingReports bounds the reports held for one check.
	maxPendingReports = 256
	// notaryRetry is how long after a failed fetch the next report may
	// start another.
	notaryRetry = 2 * time.Second
)

// notaryVerdict is what a report means under notary integrity.
type notaryVerdict int

const (
	notaryWait   notaryVerdict = iota // recorded; the notary's hash will judge it
	notaryStart                       // recorded; the caller must start the fetch
	notaryAgrees                      // matches the notary's hash
	notaryLie                         // contradicts the notary's hash for that origin
)

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
func (h *hub) reportHash(p *peer, k cluster.Key, seg uint64, sum string) (accepted string, lie bool, code signaling.Code) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, in := p.swarms[k]; !in {
		return "", false, signaling.CodeNotInSwarm
	}
	accepted, lie = h.voteLocked(h.swarms[k], p.id, h.network(p), seg, sum)
	return accepted, lie, ""
}

// contested returns where to notarize seg from when its reports conflict,
// no hash is trusted, a reporter gave an allow-listed URL, and no notary
// fetch was started yet (it marks one started).
func (h *hub) contested(k cluster.Key, seg uint64, src signaling.Source) signaling.Source {
	h.mu.Lock()
	defer h.mu.Unlock()
	sw := h.swarms[k]
	if sw == nil || sw.hashes == nil {
		return signaling.Source{}
	}
	e := sw.hashes.entries[seg]
	if e == nil || e.accepted != "" || e.notary {
		return signaling.Source{}
	}
	if e.src.URL == "" && src.URL != "" && h.notaryAllows(src.URL) {
		e.src = src
	}
	if len(e.votes) < 2 || e.src.URL == "" {
		return signaling.Source{}
	}
	e.notary = true
	return e.src
}

// settle makes the notary's hash trusted and returns the local peers that
// reported another one, removed from the swarm for good.
func (h *hub) settle(k cluster.Key, seg uint64, sum string) (accepted bool, liars []*peer) {
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
			h.banLocked(p, k)
			liars = append(liars, p)
		}
	}
	return true, liars
}

// banLocked removes p from swarm k for good.
func (h *hub) banLocked(p *peer, k cluster.Key) {
	if _, in := p.swarms[k]; in {
		h.leaveLocked(p, k)
	}
	if p.banned == nil {
		p.banned = map[cluster.Key]bool{}
	}
	if !p.banned[k] {
		p.banned[k] = true
		h.m.banned.Inc()
	}
}

// notaryReport records p's report that seg, fetched from CDN origin cdn,
// has hash sum, and judges it by the notary's hash for that origin. An
// empty sum announces a fetch under way: no vote, only the notary's start. With
// mayStart, a report that finds no fetch under way claims one
// (notaryStart): the caller fetches and calls notarized or notaryFailed.
func (h *hub) notaryReport(p *peer, k cluster.Key, seg uint64, cdn, sum string, mayStart bool, now time.Time) (notaryVerdict, signaling.Code) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, in := p.swarms[k]; !in {
		return notaryWait, signaling.CodeNotInSwarm
	}
	e := entryLocked(h.swarms[k], seg)
	c := e.checkLocked(cdn)
	if c == nil {
		return notaryWait, "" // every origin's place is taken
	}
	if c.sum != "" {
		if sum == "" || sum == c.sum {
			return notaryAgrees, ""
		}
		return notaryLie, ""
	}
	if sum == "" {
		// An announcement (the viewer is fetching the segment now): the
		// notary may start, the viewer's report comes later.
		if mayStart && !c.fetching && !now.Before(c.retryAt) {
			c.fetching = true
			return notaryStart, ""
		}
		return notaryWait, ""
	}
	if _, voted := e.voters[p.id]; voted {
		return notaryWait, "" // one report per viewer per segment
	}
	e.voters[p.id] = sum
	if len(c.pending) < maxPendingReports {
		c.pending[p.id] = sum
	}
	if mayStart && !c.fetching && !now.Before(c.retryAt) {
		c.fetching = true
		return notaryStart, ""
	}
	return notaryWait, ""
}

// checkLocked returns the check of CDN origin cdn, made if new; nil when
// maxOriginsPerSegment are taken and none is idle (found nothing, not
// fetching) to make way.
func (e *hashEntry) checkLocked(cdn string) *originCheck {
	if c := e.checks[cdn]; c != nil {
		return c
	}
	if e.checks == nil {
		e.checks = map[string]*originCheck{}
	}
	if len(e.checks) >= maxOriginsPerSegment && !evictIdleCheck(e.checks) {
		return nil
	}
	c := &originCheck{pending: map[string]string{}}
	e.checks[cdn] = c
	return c
}

// evictIdleCheck drops a check that found nothing and is not fetching.
func evictIdleCheck(checks map[string]*originCheck) bool {
	for o, c := range checks {
		if c.sum == "" && !c.fetching {
			delete(checks, o)
			return true
		}
	}
	return false
}

// notarized records the notary's hash of seg at CDN origin cdn (fetched
// here or on another node). fresh is false if this node has no member of
// k or knew it already; liars are the local members that reported another
// hash for that origin, removed from the swarm for good.
func (h *hub) notarized(k cluster.Key, seg uint64, cdn, sum string) (fresh bool, liars []*peer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sw := h.swarms[k]
	if sw == nil {
		return false, nil
	}
	c := entryLocked(sw, seg).checkLocked(cdn)
	if c == nil {
		return false, nil
	}
	c.fetching = false
	if c.sum != "" {
		return false, nil
	}
	c.sum = sum
	h.m.hashes.Inc()
	for id, reported := range c.pending {
		if reported == sum {
			continue
		}
		if p := h.peers[id]; p != nil {
			h.banLocked(p, k)
			liars = append(liars, p)
		}
	}
	c.pending = nil
	return true, liars
}

// notaryFailed ends a fetch that found nothing; the next report after
// notaryRetry starts another.
func (h *hub) notaryFailed(k cluster.Key, seg uint64, cdn string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sw := h.swarms[k]
	if sw == nil || sw.hashes == nil {
		return
	}
	if e := sw.hashes.entries[seg]; e != nil {
		if c := e.checks[cdn]; c != nil {
			c.fetching = false
			c.retryAt = now.Add(notaryRetry)
		}
	}
}

// banFromSwarm removes p from swarm k for good (a report against the
// notary's hash).
func (h *hub) banFromSwarm(p *peer, k cluster.Key) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.banLocked(p, k)
}

// notaryAllows says whether the notary may fetch raw: an http(s) URL
// without user info or "..", under one of notary_cdns (same scheme and
// host, path under the prefix) when those are set, and otherwise any such
// URL under notary integrity (the dialer then refuses non-public
// addresses, unless notary_private).
func (h *hub) notaryAllows(raw string) bool {
	if raw == "" {
		return false
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Host == "" || strings.Contains(u.Path, "..") ||
		(u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	if len(h.cfg.NotaryCDNs) == 0 {
		return h.cfg.Integrity == IntegrityNotary
	}
	for _, p := range h.cfg.NotaryCDNs {
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
func (h *hub) remoteVote(k cluster.Key, voter, network string, seg uint64, sum string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	sw := h.swarms[k]
	if sw == nil {
		return "" // no viewer of this swarm here
	}
	accepted, _ := h.voteLocked(sw, voter, network, seg, sum)
	return accepted
}

// entryLocked returns seg's entry in sw's book, made if new (evicting the
// oldest past hashBookSize).
func entryLocked(sw *swarm, seg uint64) *hashEntry {
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
	return e
}

func (h *hub) voteLocked(sw *swarm, voter, network string, seg uint64, sum string) (accepted string, lie bool) {
	e := entryLocked(sw, seg)
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

// recent returns up to recentHashes vouched hashes of swarm k, newest
// segments first.
func (h *hub) recent(k cluster.Key) []*signaling.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	sw := h.swarms[k]
	if sw == nil || sw.hashes == nil {
		return nil
	}
	var out []*signaling.Message
	order := sw.hashes.order
	for i := len(order) - 1; i >= 0 && len(out) < recentHashes; i-- {
		out = sw.hashes.entries[order[i]].messages(k, order[i], out)
	}
	return out[:min(len(out), recentHashes)]
}

// messages appends what is vouched for seg to out: the quorum's hash and
// the notary's per CDN origin.
func (e *hashEntry) messages(k cluster.Key, seg uint64, out []*signaling.Message) []*signaling.Message {
	if e.accepted != "" {
		out = append(out, hashMessage(k, seg, e.accepted, ""))
	}
	for cdn, c := range e.checks {
		if c.sum != "" {
			out = append(out, hashMessage(k, seg, c.sum, cdn))
		}
	}
	return out
}

// vouched returns what is vouched for seg of swarm k, for a member p
// asking (a hash query): the quorum's hash and the notary's per CDN origin.
func (h *hub) vouched(p *peer, k cluster.Key, seg uint64) ([]*signaling.Message, signaling.Code) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, in := p.swarms[k]; !in {
		return nil, signaling.CodeNotInSwarm
	}
	sw := h.swarms[k]
	if sw == nil || sw.hashes == nil {
		return nil, ""
	}
	e := sw.hashes.entries[seg]
	if e == nil {
		return nil, ""
	}
	return e.messages(k, seg, nil), ""
}

// hashMessage vouches for sum as seg's hash: at CDN origin cdn (the
// notary's), or anywhere (the quorum's, cdn empty).
func hashMessage(k cluster.Key, seg uint64, sum, cdn string) *signaling.Message {
	sw := k.Swarm
	return &signaling.Message{Type: signaling.TypeHash, Swarm: &sw, Segment: strconv.FormatUint(seg, 10), SHA256: sum, CDN: cdn}
}

// membersOf returns this node's members of swarm k.
func (h *hub) membersOf(k cluster.Key) []*peer {
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
func (h *hub) reportPeer(reporter *peer, k cluster.Key, target string) (removed *peer, code signaling.Code) {
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
		t.reports = map[cluster.Key]map[string]bool{}
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
		t.banned = map[cluster.Key]bool{}
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

// integrityAnnounced is Config.Integrity as the welcome names it.
func (s *Server) integrityAnnounced() string {
	if s.cfg.Integrity == IntegrityOff {
		return ""
	}
	return s.cfg.Integrity
}
