package tracker

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/peercdn/peercdn/signaling"
)

// swarmKey is a swarm as the tracker keeps it: the agent's swarm, scoped to
// the page origin so that two sites with the same content path never meet.
type swarmKey struct {
	origin string
	swarm  signaling.Swarm
}

// peer is one welcomed connection as the hub sees it.
type peer struct {
	id     string
	conn   *conn
	swarms map[swarmKey]struct{}
	slots  int // free connection slots the agent declared

	// load counts recent suggestions of this peer, halving every loadHalfLife,
	// so that one seeder is not handed to every newcomer at once.
	load   float64
	loadAt time.Time

	// offers this peer sent that the tracker relayed: who may answer, and
	// which pair may trickle candidates, until the expiry.
	offers map[offerKey]time.Time
}

type offerKey struct{ to, id string }

type swarm struct {
	members []*peer
	index   map[*peer]int
	joins   uint64
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

	mu     sync.Mutex
	peers  map[string]*peer
	swarms map[swarmKey]*swarm
	rng    *rand.Rand
}

func newHub(cfg *Config, m *metrics) *hub {
	return &hub{
		cfg:    cfg,
		m:      m,
		peers:  make(map[string]*peer),
		swarms: make(map[swarmKey]*swarm),
		rng:    rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
}

func (h *hub) add(p *peer) {
	h.mu.Lock()
	h.peers[p.id] = p
	h.mu.Unlock()
}

// remove takes p out of every swarm and forgets it.
func (h *hub) remove(p *peer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k := range p.swarms {
		h.leaveLocked(p, k)
	}
	delete(h.peers, p.id)
}

// join adds p to swarm k and returns up to K suggestions.
func (h *hub) join(p *peer, k swarmKey, now time.Time) ([]string, signaling.Code) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sw := h.swarms[k]
	if _, in := p.swarms[k]; !in {
		if len(p.swarms) >= h.cfg.MaxSwarmsPerConn {
			return nil, signaling.CodeTooManySwarms
		}
		if sw == nil {
			sw = &swarm{index: make(map[*peer]int)}
			h.swarms[k] = sw
			h.m.swarms.Inc()
		}
		if len(sw.members) >= h.cfg.MaxPeersPerSwarm {
			return nil, signaling.CodeSwarmFull
		}
		sw.index[p] = len(sw.members)
		sw.members = append(sw.members, p)
		sw.joins++
		p.swarms[k] = struct{}{}
		h.m.members.Inc()
	}
	return h.suggestLocked(sw, p, now), ""
}

func (h *hub) leave(p *peer, k swarmKey) signaling.Code {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, in := p.swarms[k]; !in {
		return signaling.CodeNotInSwarm
	}
	h.leaveLocked(p, k)
	return ""
}

func (h *hub) leaveLocked(p *peer, k swarmKey) {
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
	h.m.members.Dec()
	if len(sw.members) == 0 {
		delete(h.swarms, k)
		h.m.swarms.Dec()
	}
}

// suggest returns fresh suggestions for a member of k.
func (h *hub) suggest(p *peer, k swarmKey, now time.Time) ([]string, signaling.Code) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, in := p.swarms[k]; !in {
		return nil, signaling.CodeNotInSwarm
	}
	return h.suggestLocked(h.swarms[k], p, now), ""
}

// suggestLocked picks up to K other members, preferring those with free
// slots and few recent suggestions, and charges each pick to its load.
func (h *hub) suggestLocked(sw *swarm, self *peer, now time.Time) []string {
	k := h.cfg.Suggestions
	n := len(sw.members)
	var cand []*peer
	if n-1 <= sampleFactor*k {
		cand = make([]*peer, 0, n-1)
		for _, q := range sw.members {
			if q != self {
				cand = append(cand, q)
			}
		}
	} else {
		// Sample without replacement from a random start with a random
		// stride coprime to n: distinct members, no O(n) shuffle.
		want := sampleFactor * k
		cand = make([]*peer, 0, want)
		start := h.rng.IntN(n)
		stride := coprimeStride(h.rng, n)
		for i := 0; len(cand) < want && i < n; i++ {
			q := sw.members[(start+i*stride)%n]
			if q != self {
				cand = append(cand, q)
			}
		}
	}
	h.rng.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
	scores := make(map[*peer]float64, len(cand))
	for _, q := range cand {
		scores[q] = q.score(now)
	}
	slices.SortStableFunc(cand, func(a, b *peer) int {
		sa, sb := scores[a], scores[b]
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
	if len(cand) > k {
		cand = cand[:k]
	}
	ids := make([]string, len(cand))
	for i, q := range cand {
		ids[i] = q.id
		q.decayLoad(now)
		q.load++
	}
	return ids
}

// score ranks a candidate: any free slot beats none, then more free slots
// net of recent suggestions.
func (p *peer) score(now time.Time) float64 {
	p.decayLoad(now)
	s := float64(min(p.slots, 16)) - p.load
	if p.slots > 0 {
		s += 1000
	}
	return s
}

func (p *peer) decayLoad(now time.Time) {
	if p.load == 0 {
		p.loadAt = now
		return
	}
	dt := now.Sub(p.loadAt)
	if dt <= 0 {
		return
	}
	p.load *= math.Exp2(-float64(dt) / float64(loadHalfLife))
	p.loadAt = now
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

func (h *hub) setSlots(p *peer, slots int) {
	h.mu.Lock()
	p.slots = slots
	h.mu.Unlock()
}

// route checks that from may send a relayed message of type t to the peer
// named to in swarm k, records or refreshes the offer it belongs to, and
// returns the target.
func (h *hub) route(from *peer, k swarmKey, t signaling.Type, to, offerID string, now time.Time) (*peer, signaling.Code) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, in := from.swarms[k]; !in {
		return nil, signaling.CodeNotInSwarm
	}
	target := h.peers[to]
	if target == nil || target == from {
		return nil, signaling.CodeUnknownPeer
	}
	if _, in := target.swarms[k]; !in {
		return nil, signaling.CodeUnknownPeer
	}
	expiry := now.Add(h.cfg.OfferTTL)
	switch t {
	case signaling.TypeOffer:
		key := offerKey{to, offerID}
		if _, exists := from.offers[key]; !exists && len(from.offers) >= h.cfg.MaxPendingOffers {
			from.expireOffers(now)
			if len(from.offers) >= h.cfg.MaxPendingOffers {
				return nil, signaling.CodeTooManyOffers
			}
		}
		from.offers[key] = expiry
	case signaling.TypeAnswer:
		// Only the peer an offer went to may answer it.
		if !target.offerValid(offerKey{from.id, offerID}, now) {
			return nil, signaling.CodeUnknownOffer
		}
		target.offers[offerKey{from.id, offerID}] = expiry
	case signaling.TypeCandidate:
		switch {
		case from.offerValid(offerKey{to, offerID}, now):
		case target.offerValid(offerKey{from.id, offerID}, now):
		default:
			return nil, signaling.CodeUnknownOffer
		}
	}
	return target, ""
}

func (p *peer) offerValid(k offerKey, now time.Time) bool {
	exp, ok := p.offers[k]
	return ok && now.Before(exp)
}

func (p *peer) expireOffers(now time.Time) {
	for k, exp := range p.offers {
		if !now.Before(exp) {
			delete(p.offers, k)
		}
	}
}

// SwarmStats is one swarm in /stats.json.
type SwarmStats struct {
	Origin    string `json:"origin,omitempty"`
	Content   string `json:"content"`
	Rendition string `json:"rendition,omitempty"`
	Peers     int    `json:"peers"`
	Joins     uint64 `json:"joins"`
}

// Stats is /stats.json.
type Stats struct {
	Peers      int          `json:"peers"`
	Swarms     int          `json:"swarms"`
	Members    int          `json:"members"`
	Draining   bool         `json:"draining"`
	Listed     int          `json:"listed"`
	SwarmStats []SwarmStats `json:"swarm_stats"`
}

// stats lists up to limit swarms, largest first.
func (h *hub) stats(limit int) Stats {
	h.mu.Lock()
	st := Stats{Peers: len(h.peers), Swarms: len(h.swarms)}
	all := make([]SwarmStats, 0, len(h.swarms))
	for k, sw := range h.swarms {
		st.Members += len(sw.members)
		all = append(all, SwarmStats{Origin: k.origin, Content: k.swarm.Content,
			Rendition: k.swarm.Rendition, Peers: len(sw.members), Joins: sw.joins})
	}
	h.mu.Unlock()
	slices.SortFunc(all, func(a, b SwarmStats) int {
		if a.Peers != b.Peers {
			return b.Peers - a.Peers
		}
		if a.Content != b.Content {
			if a.Content < b.Content {
				return -1
			}
			return 1
		}
		if a.Rendition < b.Rendition {
			return -1
		}
		return 1
	})
	if len(all) > limit {
		all = all[:limit]
	}
	st.SwarmStats = all
	st.Listed = len(all)
	return st
}

// counts returns peers and swarms, for leak checks.
func (h *hub) counts() (peers, swarms int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.peers), len(h.swarms)
}
