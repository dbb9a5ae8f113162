package tracker

import (
	"context"
	"encoding/hex"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/cluster"
	"github.com/peercdn/peercdn/tracker/wtwire"
)

// WebTorrent swarms across nodes. Every /announce peer is also a member of
// its swarm in the shared store, under a key no native swarm can have (a
// control character in its content), with the member id node + hex(peer_id)
// so any node can route to it. An announce samples the whole swarm there,
// so its offers go to peers of any node alike; offers and answers for peers
// of another node travel in envelopes of these types.
const (
	envWTOffer  signaling.Type = "wt_offer"
	envWTAnswer signaling.Type = "wt_answer"
)

// wtClusterContent marks WebTorrent swarms in the shared store; native
// swarm contents cannot hold control characters.
const wtClusterContent = "\x01webtorrent"

func (k wtKey) cluster() cluster.Key {
	return cluster.Key{Origin: k.origin, Swarm: signaling.Swarm{Content: wtClusterContent, Rendition: hex.EncodeToString([]byte(k.infoHash))}}
}

func wtKeyOf(e cluster.EnvelopeSwarm) (wtKey, bool) {
	ih, err := hex.DecodeString(e.Rendition)
	if e.Content != wtClusterContent || err != nil || !wtwire.ValidID(string(ih)) {
		return wtKey{}, false
	}
	return wtKey{origin: e.Origin, infoHash: string(ih)}, true
}

// wtMemberID is how a node's WebTorrent peer is known in the shared store.
func wtMemberID(node, peerID string) string { return node + hex.EncodeToString([]byte(peerID)) }

// wtPeerOf splits a member id into its node and peer_id.
func wtPeerOf(id string) (node, peerID string, ok bool) {
	node = cluster.NodeOf(id)
	if node == "" {
		return "", "", false
	}
	b, err := hex.DecodeString(id[cluster.NodeIDLen:])
	if err != nil || !wtwire.ValidID(string(b)) {
		return "", "", false
	}
	return node, string(b), true
}

// wtClusterJoin records peerID in k across the cluster, as a seed if it
// completed, and returns a sample of the swarm (any node) to hand offers
// to; none when the store is down.
func (s *Server) wtClusterJoin(k wtKey, peerID, group string, seed bool, n int) []cluster.Member {
	return s.joinCluster(k.cluster(), &cluster.Member{ID: wtMemberID(s.hub.node, peerID), Slots: 1, Seed: seed, Group: group}, group, n)
}

// wtClusterCounts returns the sizes of swarms keys across the cluster, for
// announce and scrape; false without a shared store or when it does not
// answer, and the node's own counts stand in.
func (s *Server) wtClusterCounts(keys []wtKey) ([]cluster.SwarmCount, bool) {
	if s.cluster == nil || !s.cluster.Up() || len(keys) == 0 {
		return nil, false
	}
	ck := make([]cluster.Key, len(keys))
	for i, k := range keys {
		ck[i] = k.cluster()
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	counts, err := s.cluster.Counts(ctx, ck)
	if err != nil || len(counts) != len(keys) {
		s.m.clusterErrors.WithLabelValues("counts").Inc()
		return nil, false
	}
	return counts, true
}

// wtClusterLeave removes this node's peers, of one socket's network group,
// from swarms across the cluster.
func (s *Server) wtClusterLeave(left map[wtKey]string, group string) {
	s.leaveCluster(func(yield func(cluster.Key, cluster.Member) bool) {
		for k, id := range left {
			if !yield(k.cluster(), cluster.Member{ID: wtMemberID(s.hub.node, id), Group: group}) {
				return
			}
		}
	})
}

// wtPublish hands a WebTorrent offer or answer to the node of member to.
func (s *Server) wtPublish(typ signaling.Type, k wtKey, fromPeer, to, offerID string, sdp []byte, now time.Time) {
	s.publish(cluster.NodeOf(to), &cluster.Envelope{Swarm: k.cluster().Wire(), Type: typ, From: wtMemberID(s.hub.node, fromPeer), To: to,
		OfferID: offerID, SDP: string(sdp), SentUnix: now.UnixNano()})
}

// deliverWT hands an offer or answer from another node to a peer of this
// one. The sending node checked its side (the answer matches an offer it
// handed out); this one checks that its peer is still here.
func (s *Server) deliverWT(e *cluster.Envelope, now time.Time) {
	k, ok := wtKeyOf(e.Swarm)
	_, fromPeer, okFrom := wtPeerOf(e.From)
	fromNode := cluster.NodeOf(e.From)
	node, toPeer, okTo := wtPeerOf(e.To)
	// The SDP goes to the browser verbatim: it must be one JSON value.
	if !ok || !okFrom || !okTo || node != s.hub.node || !wtwire.ValidID(e.OfferID) || !jsontext.Value(e.SDP).IsValid() {
		s.m.rejects.WithLabelValues("wt_bad_envelope").Inc()
		return
	}
	h := s.wt
	h.mu.Lock()
	var to *wtPeer
	if sw := h.swarms[k]; sw != nil {
		to = sw.peers[toPeer]
	}
	if to == nil {
		h.mu.Unlock()
		s.m.rejects.WithLabelValues("wt_gone").Inc()
		return
	}
	field := "answer"
	if e.Type == envWTOffer {
		to.hand(wtHanded{key: h.offerKey(e.OfferID, fromPeer), node: fromNode, exp: now.Add(s.cfg.OfferTTL).UnixNano()})
		field = "offer"
	}
	h.mu.Unlock()
	b := wtwire.RelayMsg(field, []byte(e.SDP), e.OfferID, fromPeer, k.infoHash)
	if e.Type == envWTOffer {
		s.m.messages.WithLabelValues("wt_offer_relayed").Inc()
	} else {
		s.m.messages.WithLabelValues("wt_answer_relayed").Inc()
	}
	to.c.t.SendRelayed(b, relayedAt(e, now))
}

// members adds this node's WebTorrent peers to a refresh snapshot.
func (h *wtHub) members(node string, into map[cluster.Key][]cluster.Member) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, sw := range h.swarms {
		ck := k.cluster()
		for _, p := range sw.list {
			into[ck] = append(into[ck], cluster.Member{ID: wtMemberID(node, p.id), Slots: 1, Seed: p.complete, Group: p.c.group})
		}
	}
}
