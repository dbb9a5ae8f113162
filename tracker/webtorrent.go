package tracker

import (
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"golang.org/x/time/rate"

	"github.com/peercdn/peercdn/tracker/cluster"
	"github.com/peercdn/peercdn/tracker/wtwire"
)

// The WebTorrent tracker protocol at /announce, as bittorrent-tracker's
// client and p2p-media-loader speak it: JSON over WebSocket, 20-byte ids as
// JavaScript "binary strings". The tracker hands each offer of an announce
// to a distinct peer of the swarm and relays an answer only from the peer
// the offer went to, back to the peer that made it. Same admission, limits,
// origin allow-list and metrics as /ws. Stricter than bittorrent-tracker: a
// peer_id belongs to one socket per swarm, answers need a matching offer,
// and bad messages count as strikes.

type wtKey struct{ origin, infoHash string }

type wtPeer struct {
	id       string
	c        *conn
	complete bool
	idx      int // in wtSwarm.list
	// inbox holds the offers handed to this peer that it may answer: the
	// last wtInbox of them, each for offer_ttl. A browser answers within
	// seconds; keeping them per target bounds the memory without a sweep.
	inbox []wtHanded
	next  int // the inbox slot to overwrite once it is full
}

// wtInbox is how many offers handed to one peer stay answerable.
const wtInbox = 16

// wtHanded is an offer handed to a peer, which that peer may answer. It
// keeps a keyed hash of the offer's id and the offering peer's id, not the
// ids: 32 bytes per offer and no id strings kept alive (aquatic's load
// test hands out millions of offers), and nothing for the collector to
// follow in the offers of this node's peers. The key is secret, so a peer
// cannot make up an (offer, peer) pair that matches one it was handed.
type wtHanded struct {
	key  uint64 // wtHub.offerKey(offer id, offering peer id)
	exp  int64  // unix nanoseconds; 0 once answered
	node string // the offering peer's node when not this one (Redis)
}

func (p *wtPeer) hand(e wtHanded) {
	if len(p.inbox) < wtInbox {
		p.inbox = append(p.inbox, e)
		return
	}
	p.inbox[p.next] = e
	p.next = (p.next + 1) % wtInbox
}

// take removes and returns the offer with key k, if it is still
// answerable.
func (p *wtPeer) take(k uint64, now int64) (wtHanded, bool) {
	for i, e := range p.inbox {
		if e.key == k && e.exp != 0 {
			p.inbox[i] = wtHanded{}
			return e, e.exp > now
		}
	}
	return wtHanded{}, false
}

type wtSwarm struct {
	peers    map[string]*wtPeer
	list     []*wtPeer
	near     nearIndex[*wtPeer] // by the peers' sockets' network groups
	complete int
}

// wtHub holds this node's WebTorrent swarms.
type wtHub struct {
	cfg    *Config
	mu     sync.Mutex
	swarms map[wtKey]*wtSwarm
	rng    *rand.Rand
	seed   maphash.Seed // of offerKey
}

// offerKey names an offer in its target's inbox: a hash of its id and the
// offering peer's id under the hub's secret seed.
func (h *wtHub) offerKey(offerID, from string) uint64 {
	return maphash.Comparable(h.seed, [2]string{offerID, from})
}

func newWTHub(cfg *Config) *wtHub {
	return &wtHub{cfg: cfg, swarms: map[wtKey]*wtSwarm{},
		rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), seed: maphash.MakeSeed()}
}

// wtConn is a socket's WebTorrent state: its peer in each swarm.
type wtConn struct {
	peers map[wtKey]*wtPeer
	// offers bounds the offers this socket has handed out: max_pending_offers
	// per offer_ttl. Made on its first offer.
	offers *rate.Limiter
}

// handleWT processes one WebTorrent frame; false ends the connection.
func (c *conn) handleWT(b []byte) bool {
	var m wtwire.Msg
	if err := wtwire.Decode(b, &m); err != nil {
		c.send(wtwire.Failure("invalid JSON", ""))
		return c.strike("wt_bad_message")
	}
	c.s.m.messages.WithLabelValues("wt_" + wtActionLabel(m.Action)).Inc()
	switch m.Action {
	case "announce":
		return c.wtAnnounce(&m)
	case "scrape":
		return c.wtScrape(&m)
	}
	c.send(wtwire.Failure("invalid action", ""))
	return c.strike("wt_bad_message")
}

func wtActionLabel(a string) string {
	if a == "announce" || a == "scrape" {
		return a
	}
	return "other"
}

func (c *conn) wtAnnounce(m *wtwire.Msg) bool {
	var ih string
	if jsonv2.Unmarshal(m.InfoHash, &ih) != nil || !wtwire.ValidID(ih) || !wtwire.ValidID(m.PeerID) {
		c.send(wtwire.Failure("info_hash and peer_id must be 20-byte strings", ""))
		return c.strike("wt_bad_message")
	}
	if c.s.draining.Load() {
		c.send(wtwire.Failure("tracker node draining: reconnect elsewhere", ih))
		return true
	}
	if !c.welcomed.Load() {
		c.welcomed.Store(true)
		c.timer.Reset(c.idleTimeout())
	}
	k := wtKey{c.origin, ih}
	h := c.s.wt
	now := time.Now()

	if m.Answer != nil {
		return c.wtAnswer(k, m, now)
	}

	h.mu.Lock()
	sw := h.swarms[k]
	self := c.wt.peers[k]
	isNew := false
	switch {
	case self != nil && self.id != m.PeerID:
		h.mu.Unlock()
		c.send(wtwire.Failure("one peer_id per socket and swarm", ih))
		return c.strike("wt_peer_id")
	case self == nil:
		if sw != nil && sw.peers[m.PeerID] != nil {
			h.mu.Unlock()
			c.send(wtwire.Failure("peer_id in use by another socket", ih))
			return c.strike("wt_peer_id")
		}
		if m.Event == "stopped" {
			h.mu.Unlock()
			return true
		}
		if len(c.wt.peers) >= c.s.cfg.MaxSwarmsPerConn {
			h.mu.Unlock()
			c.send(wtwire.Failure("in max_swarms_per_conn swarms already", ih))
			return true
		}
		if sw == nil {
			sw = &wtSwarm{peers: map[string]*wtPeer{}}
			h.swarms[k] = sw
			c.s.m.swarms.Inc()
		}
		if len(sw.list) >= c.s.cfg.MaxPeersPerSwarm {
			h.mu.Unlock()
			c.send(wtwire.Failure("swarm full", ih))
			return true
		}
		isNew = true
		self = &wtPeer{id: m.PeerID, c: c, idx: len(sw.list)}
		sw.peers[m.PeerID] = self
		sw.list = append(sw.list, self)
		sw.near.add(c.group, self)
		c.wt.peers[k] = self
		c.s.m.members.Inc()
	}
	if m.Event == "stopped" {
		h.removeLocked(k, self)
		delete(c.wt.peers, k)
		h.mu.Unlock()
		c.s.wtClusterLeave(map[wtKey]string{k: self.id}, c.group)
		return true
	}
	completed := m.Event == "completed" && !self.complete
	if completed {
		self.complete = true
		sw.complete++
	}
	seed := self.complete
	want := len(m.Offers)
	if want > wtwire.MaxOffers {
		want = wtwire.MaxOffers
	}
	if m.NumWant != nil && *m.NumWant < want {
		want = max(*m.NumWant, 0)
	}
	h.mu.Unlock()

	// With a shared store, the swarm is sampled there, across nodes (and
	// a newcomer recorded); offers then go to the sample first.
	var sample []cluster.Member
	if c.s.cluster != nil && (isNew || want > 0 || completed) {
		sample = c.s.wtClusterJoin(k, self.id, c.group, seed, 2*want)
	}

	h.mu.Lock()
	if h.swarms[k] != sw || sw.peers[self.id] != self {
		h.mu.Unlock() // left meanwhile (socket closed)
		return true
	}
	// Hand each offer to a distinct other peer, chosen at random.
	type out struct {
		to     *wtPeer // a peer of this node, or
		member string  // one of another node
		msg    []byte
		offer  []byte
		id     string
	}
	var sends []out
	// offer hands the next offer to q, a peer of this node, or else to
	// member, a peer of another; false once the offers are used up, bad or
	// over this socket's limit.
	offer := func(q *wtPeer, member string) bool {
		o := m.Offers[len(sends)]
		if !wtwire.ValidID(o.OfferID) || len(o.Offer) == 0 {
			return false
		}
		if c.wt.offers == nil {
			c.wt.offers = rate.NewLimiter(rate.Limit(float64(c.s.cfg.MaxPendingOffers)/c.s.cfg.OfferTTL.Seconds()), c.s.cfg.MaxPendingOffers)
		}
		if !c.wt.offers.AllowN(now, 1) {
			return false
		}
		if q == nil {
			sends = append(sends, out{member: member, offer: o.Offer, id: o.OfferID})
			return true
		}
		q.hand(wtHanded{key: h.offerKey(o.OfferID, self.id), exp: now.Add(c.s.cfg.OfferTTL).UnixNano()})
		sends = append(sends, out{to: q, msg: wtwire.RelayMsg("offer", o.Offer, o.OfferID, self.id, ih)})
		return true
	}
	// Peer ids of this node, member ids of others: self and each peer
	// offered to, a dozen at most, so a small array rather than a map per
	// announce.
	var pickedArr [2*wtwire.MaxOffers + 1]string
	picked := append(pickedArr[:0], self.id)
	isPicked := func(id string) bool { return slices.Contains(picked, id) }
	// Peers of this node in the socket's network group first (proximity.go),
	// half the offers at most, so that the rest still spread over the swarm.
	near := 0
	if g := sw.near[c.group]; c.group != "" && len(g) > 1 {
		start := h.rng.IntN(len(g))
		for i := 0; i < len(g) && len(sends) < (want+1)/2; i++ {
			q := g[(start+i)%len(g)]
			if isPicked(q.id) {
				continue
			}
			picked = append(picked, q.id)
			if !offer(q, "") {
				want = 0
				break
			}
			near++
		}
	}
	// Then the store's sample: its members in the socket's group (other
	// nodes' neighbours) while under half, then the others.
	fromSample := func(nearOnly bool, upTo int) {
		for _, mb := range sample {
			if len(sends) >= upTo {
				return
			}
			if nearOnly && mb.Group == "" {
				continue
			}
			node, pid, ok := wtPeerOf(mb.ID)
			if !ok {
				continue
			}
			var q *wtPeer
			key := mb.ID
			if node == c.s.hub.node {
				if q, key = sw.peers[pid], pid; q == nil {
					continue // left since
				}
			}
			if isPicked(key) {
				continue
			}
			picked = append(picked, key)
			if !offer(q, mb.ID) {
				want = 0
				return
			}
			if nearOnly {
				near++
			}
		}
	}
	fromSample(true, (want+1)/2)
	fromSample(false, want)
	// The rest (no store, or a short sample) from this node's peers.
	if len(sends) < want && len(sw.list) > 1 {
		start := h.rng.IntN(len(sw.list))
		for i := 0; i < len(sw.list) && len(sends) < want; i++ {
			q := sw.list[(start+i)%len(sw.list)]
			if isPicked(q.id) {
				continue
			}
			picked = append(picked, q.id)
			if !offer(q, "") {
				break
			}
		}
	}
	complete, incomplete := sw.complete, len(sw.list)-sw.complete
	h.mu.Unlock()
	c.s.m.suggestedNear.Add(float64(near))
	c.s.m.suggestedOther.Add(float64(len(sends) - near))
	for _, o := range sends {
		if o.to == nil {
			c.s.wtPublish(envWTOffer, k, self.id, o.member, o.id, o.offer, now)
			continue
		}
		c.s.m.messages.WithLabelValues("wt_offer_relayed").Inc()
		o.to.c.t.SendRelayed(o.msg, now)
	}
	if counts, ok := c.s.wtClusterCounts([]wtKey{k}); ok {
		complete, incomplete = counts[0].Seeds, counts[0].Leechers()
	}
	c.send(wtwire.AnnounceReply(int(c.s.cfg.AnnounceInterval/time.Second), ih, complete, incomplete))
	return true
}

// wtAnswer relays an answer to the peer whose offer it answers, only from
// the peer that offer was handed to.
func (c *conn) wtAnswer(k wtKey, m *wtwire.Msg, now time.Time) bool {
	h := c.s.wt
	h.mu.Lock()
	self := c.wt.peers[k]
	var e wtHanded
	ok := self != nil && self.id == m.PeerID
	if ok {
		e, ok = self.take(h.offerKey(m.OfferID, m.ToPeerID), now.UnixNano())
	}
	var to *wtPeer
	if ok && e.node == "" {
		if sw := h.swarms[k]; sw != nil {
			to = sw.peers[m.ToPeerID]
		}
		ok = to != nil && !to.c.t.Closing()
	}
	h.mu.Unlock()
	if !ok {
		// Dropped without a reply or a strike, as bittorrent-tracker does:
		// under load an honest peer's offer may have been forgotten (each
		// peer keeps its last wtInbox). The rate limit bounds what spraying
		// answers costs.
		c.s.m.rejects.WithLabelValues("wt_unknown_offer").Inc()
		return true
	}
	if e.node != "" { // the offer came from a peer of another node
		c.s.wtPublish(envWTAnswer, k, self.id, wtMemberID(e.node, m.ToPeerID), m.OfferID, m.Answer, now)
		return true
	}
	b := wtwire.RelayMsg("answer", m.Answer, m.OfferID, self.id, k.infoHash)
	c.s.m.messages.WithLabelValues("wt_answer_relayed").Inc()
	to.c.t.SendRelayed(b, now)
	return true
}

func (c *conn) wtScrape(m *wtwire.Msg) bool {
	var list []string
	var one string
	if jsonv2.Unmarshal(m.InfoHash, &one) == nil {
		list = []string{one}
	} else if jsonv2.Unmarshal(m.InfoHash, &list) != nil || len(list) > wtwire.MaxScrape {
		c.send(wtwire.Failure("info_hash must be a string or a list of up to 64", ""))
		return c.strike("wt_bad_message")
	}
	keys := make([]wtKey, 0, len(list))
	for _, ih := range list {
		if wtwire.ValidID(ih) {
			keys = append(keys, wtKey{c.origin, ih})
		}
	}
	// Across the cluster when there is one; else (or when it does not
	// answer) this node's own peers.
	counts, ok := c.s.wtClusterCounts(keys)
	if !ok {
		counts = c.s.wt.sizes(keys)
	}
	files := make(map[string]any, len(keys))
	for i, k := range keys {
		files[k.infoHash] = map[string]int{"complete": counts[i].Seeds, "incomplete": counts[i].Leechers(), "downloaded": counts[i].Seeds}
	}
	b, _ := jsonv2.Marshal(map[string]any{"action": "scrape", "files": files})
	c.send(b)
	return true
}

func (h *wtHub) removeLocked(k wtKey, p *wtPeer) {
	sw := h.swarms[k]
	if sw == nil || sw.peers[p.id] != p {
		return
	}
	last := len(sw.list) - 1
	sw.list[p.idx] = sw.list[last]
	sw.list[p.idx].idx = p.idx
	sw.list[last] = nil
	sw.list = sw.list[:last]
	delete(sw.peers, p.id)
	sw.near.remove(p.c.group, p)
	if p.complete {
		sw.complete--
	}
	p.c.s.m.members.Dec()
	if len(sw.list) == 0 {
		delete(h.swarms, k)
		p.c.s.m.swarms.Dec()
	}
}

// leave removes a closing socket's peers; the offers they were handed go
// with them. It returns what they left, for the shared store.
func (h *wtHub) leave(c *conn) map[wtKey]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	left := make(map[wtKey]string, len(c.wt.peers))
	for k, p := range c.wt.peers {
		h.removeLocked(k, p)
		left[k] = p.id
	}
	return left
}

// sizes returns the sizes of this node's swarms keys.
func (h *wtHub) sizes(keys []wtKey) []cluster.SwarmCount {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]cluster.SwarmCount, len(keys))
	for i, k := range keys {
		if sw := h.swarms[k]; sw != nil {
			out[i] = cluster.SwarmCount{Members: len(sw.list), Seeds: sw.complete}
		}
	}
	return out
}

// counts returns swarms and answerable offers, for leak checks.
func (h *wtHub) counts() (swarms, offers int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now().UnixNano()
	for _, sw := range h.swarms {
		for _, p := range sw.list {
			for _, e := range p.inbox {
				if e.exp > now {
					offers++
				}
			}
		}
	}
	return len(h.swarms), offers
}
