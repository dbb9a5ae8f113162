package tracker

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/cluster"
)

// peer is one welcomed connection as the hub sees it.
type peer struct {
	id     string
	conn   *conn
	swarms map[cluster.Key]struct{}
	slots  int    // free connection slots the agent declared
	group  string // its network group, for matching (proximity.go)

	// load counts recent suggestions of this peer, halving every loadHalfLife,
	// so that one seeder is not handed to every newcomer at once.
	load   float64
	loadAt time.Time

	// sent are the offers this peer sent that the tracker relayed, keyed by
	// (target, offer id); recv the offers relayed to it, keyed by (sender,
	// offer id). Each node checks its own peer's side of an exchange, so an
	// answer or candidate crossing nodes is checked on both without a lookup:
	// only the target of an offer may answer it, and only the pair of a live
	// offer may trickle candidates, until the expiry.
	sent map[offerKey]time.Time
	recv map[offerKey]time.Time

	// reports: who complained about this peer's bytes, per swarm; banned:
	// swarms it was removed from for them.
	reports map[cluster.Key]map[string]bool
	banned  map[cluster.Key]bool
}

// offerKey is one offer as one side sees it: the other peer and the offer id.
type offerKey struct{ other, id string }

// maxRecvFactor bounds the offers one peer may have received and not yet
// answered, as a multiple of MaxPendingOffers: each sender is bounded by its
// own pending limit, this bounds many senders aiming at one target.
const maxRecvFactor = 4

// maxOffersFromOne bounds the live offers one sender holds at one target.
// An honest agent has one offer in flight per peer (a retry follows a
// failure, seconds apart), so a handful within OfferTTL is generous; it is
// what keeps a few members from filling a chosen peer's table.
const maxOffersFromOne = 8

type swarm struct {
	members []*peer
	index   map[*peer]int
	near    nearIndex[*peer]
	joins   uint64
	hashes  *hashBook
	usage   signaling.Usage // what its viewers reported getting (usage.go)
}

// remoteLoad is the suggestion load this node charged to a peer of another
// node; each node spreads its own suggestions, which is enough to keep one
// seeder from being handed to every newcomer.
type remoteLoad struct {
	load   float64
	loadAt time.Time
}

const (
	loadHalfLife = 10 * time.Second
	// sampleFactor: a newcomer's K suggestions are the best of a random
	// sample of sampleFactor*K members, so matching stays O(K) in big swarms.
	sampleFactor = 4
)

// hub holds the swarms and peers of one node. Every method takes the lock;
// none blocks on the network.
type hub struct {
	cfg *Config
	m   *metrics
	// node prefixes the ids of this node's peers; clustered says whether
	// ids of other nodes may be routed to.
	node      string
	clustered bool

	mu     sync.Mutex
	peers  map[string]*peer
	swarms map[cluster.Key]*swarm
	remote map[string]*remoteLoad
	rng    *rand.Rand
	usage  signaling.Usage // this node's viewers' reports since it started
	// cohorts splits usage by rollout cohort (rollout.go); sites does for
	// each site set apart in the rollout (at most maxRolloutOrigins).
	cohorts [numCohorts]cohortFigures
	sites   map[string]*[numCohorts]cohortFigures
}

func newHub(cfg *Config, m *metrics, node string, clustered bool) *hub {
	return &hub{
		cfg:       cfg,
		m:         m,
		node:      node,
		clustered: clustered,
		peers:     make(map[string]*peer),
		swarms:    make(map[cluster.Key]*swarm),
		remote:    make(map[string]*remoteLoad),
		rng:       rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
}

func newPeer(id string, c *conn) *peer {
	return &peer{id: id, conn: c, swarms: make(map[cluster.Key]struct{}),
		sent: make(map[offerKey]time.Time), recv: make(map[offerKey]time.Time)}
}

func (h *hub) isMember(p *peer, k cluster.Key) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, in := p.swarms[k]
	return in
}

func (h *hub) add(p *peer) {
	h.mu.Lock()
	h.peers[p.id] = p
	h.mu.Unlock()
}

// remove takes p out of every swarm and forgets it; it returns the swarms
// p was in.
func (h *hub) remove(p *peer) []cluster.Key {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.peers, p.id)
	return h.leaveAllLocked(p)
}

// join adds p to swarm k. Suggestions are a separate step (suggest), so a
// clustered node can fetch other nodes' members between the two without
// holding the lock.
func (h *hub) join(p *peer, k cluster.Key) signaling.Code {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, in := p.swarms[k]; in {
		return ""
	}
	if p.banned[k] {
		return signaling.CodeBanned
	}
	if len(p.swarms) >= h.cfg.MaxSwarmsPerConn {
		return signaling.CodeTooManySwarms
	}
	sw := h.swarms[k]
	if sw == nil {
		sw = &swarm{index: make(map[*peer]int)}
		h.swarms[k] = sw
		h.m.swarms.Inc()
	}
	if len(sw.members) >= h.cfg.MaxPeersPerSwarm {
		if len(sw.members) == 0 {
			delete(h.swarms, k)
			h.m.swarms.Dec()
		}
		return signaling.CodeSwarmFull
	}
	sw.index[p] = len(sw.members)
	sw.members = append(sw.members, p)
	sw.near.add(p.group, p)
	sw.joins++
	p.swarms[k] = struct{}{}
	h.m.members.Inc()
	return ""
}

func (h *hub) leave(p *peer, k cluster.Key) signaling.Code {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, in := p.swarms[k]; !in {
		return signaling.CodeNotInSwarm
	}
	h.leaveLocked(p, k)
	return ""
}

func (h *hub) leaveLocked(p *peer, k cluster.Key) {
	delete(p.swarms, k)
	sw := h.swarms[k]
	if sw == nil {
		return
	}
	i, ok := sw.index[p]
	if !ok {
		return
	}
	last := len(sw.members) - 1
	sw.members[i] = sw.members[last]
	sw.index[sw.members[i]] = i
	sw.members[last] = nil
	sw.members = sw.members[:last]
	delete(sw.index, p)
	sw.near.remove(p.group, p)
	h.m.members.Dec()
	if len(sw.members) == 0 {
		delete(h.swarms, k)
		h.m.swarms.Dec()
	}
}

// candidate is a peer that may be suggested: one of this node's, or one
// another node holds (from the cluster).
type candidate struct {
	id    string
	slots int
	near  bool // in the newcomer's network group
	load  *float64
	at    *time.Time
}

// suggest returns up to K other members of k for p: this node's and, when
// clustered, those of other nodes in remote. It prefers peers with free
// slots and few recent suggestions, and charges each pick to its load.
func (h *hub) suggest(p *peer, k cluster.Key, now time.Time, remote []cluster.Member) ([]string, signaling.Code) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, in := p.swarms[k]; !in {
		return nil, signaling.CodeNotInSwarm
	}
	return h.suggestLocked(h.swarms[k], p, now, remote), ""
}

func (h *hub) suggestLocked(sw *swarm, self *peer, now time.Time, remote []cluster.Member) []string {
	k := h.cfg.Suggestions
	want := sampleFactor * k
	cand := make([]candidate, 0, min(len(sw.members)-1, want)+len(remote))
	n := len(sw.members)
	if n-1 <= want {
		for _, q := range sw.members {
			if q != self {
				cand = append(cand, q.candidateFor(self))
			}
		}
	} else {
		// The newcomer's own group first (from a random start, to spread
		// them; half the candidates at most, so that a group whose peers
		// have no free slots leaves room for others), then a sample of the
		// rest without replacement from a random start with a random
		// stride coprime to n: distinct members, no O(n) shuffle.
		if g := sw.near[self.group]; self.group != "" && len(g) > 0 {
			start := h.rng.IntN(len(g))
			for i := 0; len(cand) < want/2 && i < len(g); i++ {
				if q := g[(start+i)%len(g)]; q != self {
					cand = append(cand, q.candidateFor(self))
				}
			}
		}
		start := h.rng.IntN(n)
		stride := coprimeStride(h.rng, n)
		for i := 0; len(cand) < want && i < n; i++ {
			q := sw.members[(start+i*stride)%n]
			if q != self && (self.group == "" || q.group != self.group) {
				cand = append(cand, q.candidateFor(self))
			}
		}
	}
	for _, m := range remote {
		if m.ID == self.id || cluster.NodeOf(m.ID) == h.node {
			continue // this node's members are sampled above, with their load
		}
		rl := h.remote[m.ID]
		if rl == nil {
			rl = &remoteLoad{loadAt: now}
			h.remote[m.ID] = rl
		}
		cand = append(cand, candidate{id: m.ID, slots: m.Slots, near: m.Group != "" && m.Group == self.group,
			load: &rl.load, at: &rl.loadAt})
	}
	h.rng.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
	scores := make([]float64, len(cand))
	for i := range cand {
		scores[i] = cand[i].score(now)
	}
	idx := make([]int, len(cand))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		sa, sb := scores[a], scores[b]
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
	if len(idx) > k {
		idx = idx[:k]
	}
	ids := make([]string, len(idx))
	for i, j := range idx {
		c := cand[j]
		ids[i] = c.id
		if c.near {
			h.m.suggestedNear.Inc()
		} else {
			h.m.suggestedOther.Inc()
		}
		decay(c.load, c.at, now)
		*c.load++
	}
	return ids
}

// candidateFor makes p a candidate for newcomer self.
func (p *peer) candidateFor(self *peer) candidate {
	return candidate{id: p.id, slots: p.slots, near: p.group != "" && p.group == self.group, load: &p.load, at: &p.loadAt}
}

// sweepRemote forgets the load of other nodes' peers once it has decayed
// to nothing, so the map only holds recently suggested peers.
func (h *hub) sweepRemote(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, rl := range h.remote {
		decay(&rl.load, &rl.loadAt, now)
		if rl.load < 0.01 {
			delete(h.remote, id)
		}
	}
}

// score ranks a candidate: any free slot beats none, then more free slots
// net of recent suggestions.
func (c candidate) score(now time.Time) float64 {
	decay(c.load, c.at, now)
	s := float64(min(c.slots, 16)) - *c.load
	if c.slots > 0 {
		s += 1000
	}
	if c.near {
		s += nearBonus
	}
	return s
}

// decay halves a load every loadHalfLife since at.
func decay(load *float64, at *time.Time, now time.Time) {
	if *load == 0 {
		*at = now
		return
	}
	dt := now.Sub(*at)
	if dt <= 0 {
		return
	}
	*load *= math.Exp2(-float64(dt) / float64(loadHalfLife))
	*at = now
}

func coprimeStride(rng *rand.Rand, n int) int {
	for {
		s := 1 + rng.IntN(n)
		if gcd(s, n) == 1 {
			return s
		}
	}
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// peer returns this node's peer with that id, or nil.
func (h *hub) peer(id string) *peer {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.peers[id]
}

func (p *peer) slotsNow(h *hub) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return p.slots
}

func (h *hub) setSlots(p *peer, slots int) {
	h.mu.Lock()
	p.slots = slots
	h.mu.Unlock()
}

// route checks that from may send a relayed message of type t to the peer
// named to in swarm k and records or refreshes the offer it belongs to. A
// target on this node is checked and updated too (bookLocked) and
// returned; a target on another node is returned as its node id, and that
// node checks its side when the envelope arrives.
func (h *hub) route(from *peer, k cluster.Key, t signaling.Type, to, offerID string, now time.Time) (*peer, string, signaling.Code) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, in := from.swarms[k]; !in {
		return nil, "", signaling.CodeNotInSwarm
	}
	if to == from.id {
		return nil, "", signaling.CodeUnknownPeer
	}
	target := h.peers[to]
	node := ""
	if target == nil {
		node = cluster.NodeOf(to)
		if !h.clustered || node == "" || node == h.node {
			return nil, "", signaling.CodeUnknownPeer
		}
	} else if _, in := target.swarms[k]; !in {
		return nil, "", signaling.CodeUnknownPeer
	}
	if code := h.bookLocked(from, true, t, to, offerID, now); code != "" {
		return nil, "", code
	}
	if target != nil {
		if code := h.bookLocked(target, false, t, from.id, offerID, now); code != "" {
			return nil, "", code
		}
	}
	return target, node, ""
}

// deliver is the target's side of a relay that arrived from another node:
// the target must be this node's and in swarm k, and the message must
// belong to an offer it has a part in.
func (h *hub) deliver(k cluster.Key, t signaling.Type, to, from, offerID string, now time.Time) (*peer, signaling.Code) {
	h.mu.Lock()
	defer h.mu.Unlock()
	target := h.peers[to]
	if target == nil {
		return nil, signaling.CodeUnknownPeer
	}
	if _, in := target.swarms[k]; !in {
		return nil, signaling.CodeUnknownPeer
	}
	if code := h.bookLocked(target, false, t, from, offerID, now); code != "" {
		return nil, code
	}
	return target, ""
}

// bookLocked checks t between p and other against p's tables of
// negotiations and records it there, p being the sender (out) or the
// target: both sides of a relay are booked, the sender's on its node and
// the target's on its own. An offer goes in the table of offers p made
// (out) or received, capped (MaxPendingOffers for those made, admitOffer's
// fair shares for those received); an answer must belong to an offer that
// went the other way, and keeps it alive; a candidate belongs to either.
func (h *hub) bookLocked(p *peer, out bool, t signaling.Type, other, offerID string, now time.Time) signaling.Code {
	key := offerKey{other, offerID}
	expiry := now.Add(h.cfg.OfferTTL)
	offers, answered := p.recv, p.sent
	if out {
		offers, answered = p.sent, p.recv
	}
	switch t {
	case signaling.TypeOffer:
		if _, exists := offers[key]; !exists {
			if code := h.admitLocked(offers, out, other, now); code != "" {
				return code
			}
		}
		offers[key] = expiry
	case signaling.TypeAnswer:
		// Only the peer an offer went to may answer it.
		if !offerValid(answered, key, now) {
			return signaling.CodeUnknownOffer
		}
		answered[key] = expiry
	case signaling.TypeCandidate:
		if !offerValid(p.sent, key, now) && !offerValid(p.recv, key, now) {
			return signaling.CodeUnknownOffer
		}
	}
	return ""
}

// admitLocked makes room for one more offer in a table of offers made
// (out) or received from sender, or refuses it.
func (h *hub) admitLocked(offers map[offerKey]time.Time, out bool, sender string, now time.Time) signaling.Code {
	if !out {
		return admitOffer(offers, sender, maxRecvFactor*h.cfg.MaxPendingOffers, now)
	}
	if len(offers) >= h.cfg.MaxPendingOffers {
		expireOffers(offers, now)
		if len(offers) >= h.cfg.MaxPendingOffers {
			return signaling.CodeTooManyOffers
		}
	}
	return ""
}

// admitOffer makes room in a target's received offers for one more from
// sender, or refuses it. No sender holds more than maxOffersFromOne; when the
// table is full, the sender holding the most gives up its oldest, so long as
// that is more than the newcomer holds. However many members aim at one peer,
// a sender that holds less than its fair share always gets through: the
// victim keeps receiving honest offers, and the attackers only push out each
// other's.
func admitOffer(recv map[offerKey]time.Time, sender string, limit int, now time.Time) signaling.Code {
	held := countFrom(recv, sender)
	if held >= maxOffersFromOne {
		expireOffers(recv, now)
		if held = countFrom(recv, sender); held >= maxOffersFromOne {
			return signaling.CodeTooManyOffers
		}
	}
	if len(recv) < limit {
		return ""
	}
	expireOffers(recv, now)
	if len(recv) < limit {
		return ""
	}
	counts := make(map[string]int, len(recv)/maxOffersFromOne+1)
	top := ""
	for k := range recv {
		counts[k.other]++
		if c := counts[k.other]; c > counts[top] || (c == counts[top] && k.other < top) {
			top = k.other
		}
	}
	if counts[top] <= held+1 {
		// Everyone holds about as much as this sender: the table is full
		// of fair shares, and this one must wait like the others.
		return signaling.CodeTooManyOffers
	}
	var oldest offerKey
	var oldestExp time.Time
	for k, exp := range recv {
		if k.other == top && (oldestExp.IsZero() || exp.Before(oldestExp)) {
			oldest, oldestExp = k, exp
		}
	}
	delete(recv, oldest)
	return ""
}

func countFrom(recv map[offerKey]time.Time, sender string) int {
	n := 0
	for k := range recv {
		if k.other == sender {
			n++
		}
	}
	return n
}

func offerValid(m map[offerKey]time.Time, k offerKey, now time.Time) bool {
	exp, ok := m[k]
	return ok && now.Before(exp)
}

func expireOffers(m map[offerKey]time.Time, now time.Time) {
	for k, exp := range m {
		if !now.Before(exp) {
			delete(m, k)
		}
	}
}

// snapshot lists every member this node holds, by swarm, for Refresh.
func (h *hub) snapshot() map[cluster.Key][]cluster.Member {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[cluster.Key][]cluster.Member, len(h.swarms))
	for k, sw := range h.swarms {
		ms := make([]cluster.Member, len(sw.members))
		for i, p := range sw.members {
			ms[i] = cluster.Member{ID: p.id, Slots: p.slots, Group: p.group}
		}
		out[k] = ms
	}
	return out
}

// localPeers lists this node's peers.
func (h *hub) localPeers() []*peer {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*peer, 0, len(h.peers))
	for _, p := range h.peers {
		out = append(out, p)
	}
	return out
}

// leaveAll takes p out of every swarm it is in and lists them.
func (h *hub) leaveAll(p *peer) []cluster.Key {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.leaveAllLocked(p)
}

func (h *hub) leaveAllLocked(p *peer) []cluster.Key {
	out := make([]cluster.Key, 0, len(p.swarms))
	for k := range p.swarms {
		out = append(out, k)
		h.leaveLocked(p, k)
	}
	return out
}

// stats lists up to limit swarms, largest first.
func (h *hub) stats(limit int) Stats {
	h.mu.Lock()
	st := Stats{Peers: len(h.peers), Swarms: len(h.swarms), Usage: usageStats(h.usage)}
	all := make([]SwarmStats, 0, len(h.swarms))
	for k, sw := range h.swarms {
		st.Members += len(sw.members)
		all = append(all, SwarmStats{Origin: k.Origin, Content: k.Swarm.Content,
			Rendition: k.Swarm.Rendition, Peers: len(sw.members), Networks: len(sw.near), Joins: sw.joins, UsageStats: usageStats(sw.usage)})
	}
	h.mu.Unlock()
	sortSwarmStats(all)
	if len(all) > limit {
		all = all[:limit]
	}
	st.SwarmStats = all
	st.Listed = len(all)
	return st
}

// cohortStats is each cohort's figures, every site's and (sites) each
// site's set apart in the rollout: viewers now, and what they reported.
func (h *hub) cohortStats(apart map[string]int) (all, sites []CohortStats) {
	h.mu.Lock()
	defer h.mu.Unlock()
	all = make([]CohortStats, numCohorts)
	for i := range all {
		all[i] = CohortStats{Cohort: cohortNames[i], WatchMs: h.cohorts[i].watchMs, Usage: usageStats(h.cohorts[i].usage)}
	}
	origins := slices.Sorted(maps.Keys(apart))
	index := make(map[string]int, len(origins))
	for _, o := range origins {
		index[o] = len(sites)
		f := h.sites[o]
		for i := range numCohorts {
			row := CohortStats{Origin: o, Cohort: cohortNames[i]}
			if f != nil {
				row.WatchMs, row.Usage = f[i].watchMs, usageStats(f[i].usage)
			}
			sites = append(sites, row)
		}
	}
	for _, p := range h.peers {
		c := cohortOf(p.conn.control.Load())
		all[c].Viewers++
		if j, ok := index[p.conn.origin]; ok {
			sites[j+c].Viewers++
		}
	}
	return all, sites
}

// sortSwarmStats orders swarms largest first, then by name.
func sortSwarmStats(all []SwarmStats) {
	slices.SortFunc(all, func(a, b SwarmStats) int {
		if a.Peers != b.Peers {
			return b.Peers - a.Peers
		}
		if c := strings.Compare(a.Origin, b.Origin); c != 0 {
			return c
		}
		if c := strings.Compare(a.Content, b.Content); c != 0 {
			return c
		}
		return strings.Compare(a.Rendition, b.Rendition)
	})
}

// counts returns peers and swarms, for leak checks.
func (h *hub) counts() (peers, swarms int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.peers), len(h.swarms)
}
