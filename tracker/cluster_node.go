package tracker

import (
	"context"
	"iter"
	"strconv"
	"time"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/cluster"
)

// clusterTimeout bounds one call to the shared store on a client's path:
// past it the node answers from its own hub.
const clusterTimeout = 250 * time.Millisecond

// clusterInbox delivers what other nodes relay to this node's peers, and
// tells the sender's node when that fails.
func (s *Server) clusterInbox() {
	defer s.clusterWG.Done()
	for {
		select {
		case <-s.clusterStop:
			return
		case e, ok := <-s.cluster.Inbox():
			if !ok {
				return
			}
			s.deliverEnvelope(e)
		}
	}
}

func (s *Server) deliverEnvelope(e *cluster.Envelope) {
	now := time.Now()
	s.m.clusterIn.Inc()
	if e.Code != "" {
		// A relay of ours failed on the target's node: tell the sender.
		if p := s.hub.peer(e.From); p != nil {
			p.conn.reply(e.Code, e.Ref, "cannot relay "+string(e.Type)+" to "+truncate(e.To, 40))
		}
		return
	}
	if e.Type == signaling.TypeHash && e.CDN != "" {
		seg, err := strconv.ParseUint(e.Segment, 10, 64)
		if o, ok := signaling.CDNOrigin(e.CDN); err != nil || !validHash(e.SHA256) || !ok || o != e.CDN {
			return
		}
		s.applyNotary(e.Swarm.Key(), seg, e.CDN, e.SHA256)
		return
	}
	if e.Type == signaling.TypeHash {
		seg, err := strconv.ParseUint(e.Segment, 10, 64)
		if err != nil || !validHash(e.SHA256) || e.From == "" || e.Net == "" {
			return
		}
		k := e.Swarm.Key()
		if sum := s.hub.remoteVote(k, e.From, e.Net, seg, e.SHA256); sum != "" {
			s.pushHash(k, seg, sum, "")
		}
		return
	}
	if e.Type == envWTOffer || e.Type == envWTAnswer {
		s.deliverWT(e, now)
		return
	}
	if cluster.NodeOf(e.From) == "" || !validType(e.Type) {
		return // not from a node of ours: ignore
	}
	k := e.Swarm.Key()
	target, code := s.hub.deliver(k, e.Type, e.To, e.From, e.OfferID, now)
	if code != "" {
		s.m.rejects.WithLabelValues(string(code)).Inc()
		back := &cluster.Envelope{Swarm: e.Swarm, Type: e.Type, From: e.From, To: e.To, Ref: e.Ref, Code: code, SentUnix: now.UnixNano()}
		s.publish(cluster.NodeOf(e.From), back)
		return
	}
	sw := signaling.Swarm{Content: e.Swarm.Content, Rendition: e.Swarm.Rendition}
	b, err := signaling.Encode(&signaling.Message{Type: e.Type, Swarm: &sw, From: e.From, OfferID: e.OfferID,
		SDP: e.SDP, Candidate: e.Cand})
	if err != nil {
		return
	}
	target.conn.t.SendRelayed(b, relayedAt(e, now))
}

func validType(t signaling.Type) bool {
	return t == signaling.TypeOffer || t == signaling.TypeAnswer || t == signaling.TypeCandidate
}

// clusterMaintain refreshes this node's members every MemberTTL/3, and at
// once when the store comes back (a restarted Redis may have lost them),
// stores its stats every StatsInterval, follows the cluster's rollout, and
// keeps the cluster gauge current.
func (s *Server) clusterMaintain() {
	defer s.clusterWG.Done()
	tick := time.NewTicker(min(time.Second, s.cfg.StatsInterval))
	defer tick.Stop()
	every := s.cfg.MemberTTL / 3
	var last, lastStats time.Time
	wasUp := false
	for {
		up := s.cluster.Up()
		now := time.Now()
		if up && now.Sub(lastStats) >= s.cfg.StatsInterval {
			ctx, cancel := context.WithTimeout(context.Background(), max(s.cfg.StatsInterval, time.Second))
			if err := s.putStats(ctx); err != nil {
				s.m.clusterErrors.WithLabelValues("stats").Inc()
				s.log.Warn("storing this node's stats failed", "err", err)
			} else {
				lastStats = now
			}
			cancel()
		}
		if up {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if err := s.pollRollout(ctx); err != nil {
				s.m.clusterErrors.WithLabelValues("rollout").Inc()
			}
			cancel()
		}
		if up && (!wasUp || now.Sub(last) >= every) {
			ctx, cancel := context.WithTimeout(context.Background(), every)
			snap := s.hub.snapshot()
			s.wt.members(s.hub.node, snap)
			err := s.cluster.Refresh(ctx, snap)
			cancel()
			if err != nil {
				s.m.clusterErrors.WithLabelValues("refresh").Inc()
				s.log.Warn("cluster refresh failed", "err", err)
				up = false
			} else {
				last = now
			}
			s.hub.sweepRemote(now)
		}
		wasUp = up
		select {
		case <-s.clusterStop:
			return
		case <-tick.C:
		}
	}
}

// clusterJoin records p in k across the cluster and returns members of
// other nodes to suggest. When the store is down or slow it returns none,
// and the node matches from its own peers.
func (s *Server) clusterJoin(p *peer, k cluster.Key, join bool) []cluster.Member {
	var m *cluster.Member
	if join {
		m = &cluster.Member{ID: p.id, Slots: p.slotsNow(s.hub), Group: p.group}
	}
	return s.joinCluster(k, m, p.group, sampleFactor*s.cfg.Suggestions)
}

// joinCluster records m in k (nil: records nothing) and returns up to n
// members of k from the store, group's first; none when it is down or
// slow.
func (s *Server) joinCluster(k cluster.Key, m *cluster.Member, group string, n int) []cluster.Member {
	if s.cluster == nil || !s.cluster.Up() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	var ms []cluster.Member
	var err error
	if m != nil {
		ms, err = s.cluster.Join(ctx, k, *m, n)
	} else {
		ms, err = s.cluster.Sample(ctx, k, group, n)
	}
	if err != nil {
		s.m.clusterErrors.WithLabelValues("join").Inc()
		return nil
	}
	return ms
}

// clusterLeave removes p from the given swarms across the cluster; if the
// store is down they expire by themselves.
func (s *Server) clusterLeave(p *peer, keys []cluster.Key) {
	s.leaveCluster(func(yield func(cluster.Key, cluster.Member) bool) {
		for _, k := range keys {
			if !yield(k, cluster.Member{ID: p.id, Group: p.group}) {
				return
			}
		}
	})
}

// leaveCluster removes each member from its swarm in the store.
func (s *Server) leaveCluster(members iter.Seq2[cluster.Key, cluster.Member]) {
	if s.cluster == nil || !s.cluster.Up() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	for k, m := range members {
		if err := s.cluster.Leave(ctx, k, m); err != nil {
			s.m.clusterErrors.WithLabelValues("leave").Inc()
			return
		}
	}
}

// clusterNotary shares the notary's hash with every other node, so each
// pushes it to its members without fetching the segment again.
func (s *Server) clusterNotary(k cluster.Key, seg uint64, cdn, sum string) {
	if s.cluster == nil || !s.cluster.Up() {
		return
	}
	e := &cluster.Envelope{Swarm: k.Wire(), Type: signaling.TypeHash, Segment: strconv.FormatUint(seg, 10),
		SHA256: sum, CDN: cdn, Node: s.hub.node, SentUnix: time.Now().UnixNano()}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := s.cluster.Broadcast(ctx, e); err != nil {
		s.m.clusterErrors.WithLabelValues("publish").Inc()
	}
}

// clusterVote shares a viewer's hash report with every other node.
func (s *Server) clusterVote(p *peer, k cluster.Key, m *signaling.Message) {
	if s.cluster == nil || !s.cluster.Up() {
		return
	}
	e := &cluster.Envelope{Swarm: k.Wire(), Type: signaling.TypeHash, From: p.id, Segment: m.Segment,
		SHA256: m.SHA256, Net: s.hub.network(p), Node: s.hub.node, SentUnix: time.Now().UnixNano()}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := s.cluster.Broadcast(ctx, e); err != nil {
		s.m.clusterErrors.WithLabelValues("publish").Inc()
	}
}

// clusterRelay hands a relayed message for a peer of another node to the
// bus.
func (s *Server) clusterRelay(from *peer, node string, k cluster.Key, m *signaling.Message, now time.Time) signaling.Code {
	e := &cluster.Envelope{Swarm: k.Wire(), Type: m.Type, From: from.id, To: m.To, OfferID: m.OfferID,
		SDP: m.SDP, Cand: m.Candidate, Ref: m.Ref, SentUnix: now.UnixNano()}
	if !s.publish(node, e) {
		return signaling.CodeUnavailable
	}
	return ""
}

// publish hands e to node's inbox, counting it or the failure.
func (s *Server) publish(node string, e *cluster.Envelope) bool {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := s.cluster.Publish(ctx, node, e); err != nil {
		s.m.clusterErrors.WithLabelValues("publish").Inc()
		return false
	}
	s.m.clusterOut.Inc()
	return true
}

// relayedAt is when the first node read e, for the relay histogram; now
// when the two machines' clocks disagree (this node's share only, then).
func relayedAt(e *cluster.Envelope, now time.Time) time.Time {
	read := time.Unix(0, e.SentUnix)
	if d := now.Sub(read); d < 0 || d > time.Minute {
		return now
	}
	return read
}
