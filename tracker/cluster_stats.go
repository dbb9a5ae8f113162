package tracker

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"
)

// A clustered node's /stats.json figures are its own viewers'. So that an
// operator without Prometheus sees the whole deployment, each node keeps a
// snapshot of them in the shared store (cluster.StatsStore.PutStats), and
// /stats.json?scope=cluster, which the dashboard reads, sums every live
// node's.

const (
	// clusterStatsSwarms bounds the swarms in a node's snapshot (the
	// largest), whatever stats_swarms allows locally: 200 rows are about
	// 30 KB per node every statsEvery.
	clusterStatsSwarms = 200
)

// localStats is /stats.json for this node alone.
func (s *Server) localStats(limit int) Stats {
	st := s.hub.stats(limit)
	st.Draining = s.draining.Load()
	st.Node = s.hub.node
	ro := s.rollout.Load()
	st.Rollout = RolloutStats{P2PPercent: ro.P2PPercent, Origins: ro.Origins}
	st.Rollout.Cohorts, st.Rollout.OriginCohorts = s.hub.cohortStats(ro.Origins)
	st.Rollout.Sites = st.Rollout.OriginCohorts
	if s.cluster != nil {
		st.Cluster = "up"
		if !s.cluster.Up() {
			st.Cluster = "degraded"
		}
	}
	return st
}

// putStats stores this node's snapshot for the others' cluster views.
func (s *Server) putStats(ctx context.Context) error {
	b, err := json.Marshal(s.localStats(min(s.cfg.StatsSwarms, clusterStatsSwarms)))
	if err != nil {
		return err
	}
	// Kept for 3 intervals: a node gone leaves the view after that.
	return s.cluster.PutStats(ctx, b, 3*s.cfg.StatsInterval)
}

// clusterView caches the cluster-wide figures briefly: every open
// dashboard asks every 2 s, and each ask reads every node's snapshot.
type clusterView struct {
	mu sync.Mutex
	at time.Time
	st Stats
}

// clusterStats sums every live node's snapshot (this node's own figures are
// current, not its snapshot's). With the store down it is this node's
// figures alone, Cluster "degraded" and Partial set.
func (s *Server) clusterStats(ctx context.Context) Stats {
	if s.cluster == nil {
		self := s.localStats(s.cfg.StatsSwarms)
		self.Nodes = []NodeSummary{summary(self)}
		return self
	}
	v := &s.clusterView
	v.mu.Lock()
	defer v.mu.Unlock()
	if time.Since(v.at) < min(time.Second, s.cfg.StatsInterval) {
		return v.st
	}
	self := s.localStats(s.cfg.StatsSwarms) // on a miss only: it sorts every swarm
	nodes := []Stats{self}
	raw, err := s.cluster.NodeStats(ctx)
	if err != nil {
		s.m.clusterErrors.WithLabelValues("stats").Inc()
	}
	for _, b := range raw {
		var st Stats
		if json.Unmarshal(b, &st) != nil || st.Node == self.Node {
			continue
		}
		nodes = append(nodes, st)
	}
	merged := mergeStats(nodes, s.cfg.StatsSwarms)
	if err != nil {
		merged.Cluster, merged.Partial = "degraded", true
	}
	v.at, v.st = time.Now(), merged
	return merged
}

func summary(st Stats) NodeSummary {
	return NodeSummary{Node: st.Node, Peers: st.Peers, Swarms: st.Swarms, Members: st.Members, Draining: st.Draining, Usage: st.Usage}
}

// mergeStats sums nodes' figures (nodes[0] is the node answering): peers,
// members and usage add up; a swarm's rows on several nodes become one, its
// peers and usage summed. Swarms counts the distinct swarms listed, or the
// largest node's count if more: a lower bound where nodes listed only their
// largest.
func mergeStats(nodes []Stats, limit int) Stats {
	out := Stats{Node: nodes[0].Node, Cluster: nodes[0].Cluster, Draining: nodes[0].Draining,
		Rollout: RolloutStats{P2PPercent: nodes[0].Rollout.P2PPercent, Origins: nodes[0].Rollout.Origins}}
	cohorts := map[string]*CohortStats{}
	type originCohort struct{ origin, cohort string }
	apart := map[originCohort]*CohortStats{}
	type key struct{ origin, content, rendition string }
	rows := map[key]*SwarmStats{}
	for _, st := range nodes {
		out.Nodes = append(out.Nodes, summary(st))
		out.Peers += st.Peers
		out.Members += st.Members
		out.Swarms = max(out.Swarms, st.Swarms)
		out.Usage.add(st.Usage)
		for _, c := range st.Rollout.originCohorts() {
			k := originCohort{c.Origin, c.Cohort}
			if m := apart[k]; m != nil {
				m.Viewers += c.Viewers
				m.WatchMs += c.WatchMs
				m.Usage.add(c.Usage)
				continue
			}
			if _, ok := out.Rollout.Origins[c.Origin]; ok && slices.Contains(cohortNames[:], c.Cohort) {
				apart[k] = &c
			}
		}
		for _, c := range st.Rollout.Cohorts {
			if m := cohorts[c.Cohort]; m != nil {
				m.Viewers += c.Viewers
				m.WatchMs += c.WatchMs
				m.Usage.add(c.Usage)
				continue
			}
			if slices.Contains(cohortNames[:], c.Cohort) {
				cohorts[c.Cohort] = &c
			}
		}
		for _, r := range st.SwarmStats {
			k := key{r.Origin, r.Content, r.Rendition}
			if m := rows[k]; m != nil {
				m.Peers += r.Peers
				m.Joins += r.Joins
				m.Networks += r.Networks // a network with viewers on two nodes counts twice
				m.UsageStats.add(r.UsageStats)
				continue
			}
			rows[k] = &r
		}
	}
	for _, name := range cohortNames {
		if c := cohorts[name]; c != nil {
			out.Rollout.Cohorts = append(out.Rollout.Cohorts, *c)
		}
	}
	for _, o := range slices.Sorted(maps.Keys(out.Rollout.Origins)) {
		for _, name := range cohortNames {
			if c := apart[originCohort{o, name}]; c != nil {
				out.Rollout.OriginCohorts = append(out.Rollout.OriginCohorts, *c)
			}
		}
	}
	out.Rollout.Sites = out.Rollout.OriginCohorts
	out.Swarms = max(out.Swarms, len(rows))
	all := make([]SwarmStats, 0, len(rows))
	for _, r := range rows {
		all = append(all, *r)
	}
	sortSwarmStats(all)
	if len(all) > limit {
		all = all[:limit]
	}
	out.SwarmStats, out.Listed = all, len(all)
	slices.SortFunc(out.Nodes[1:], func(a, b NodeSummary) int {
		if a.Node < b.Node {
			return -1
		}
		return 1
	})
	return out
}
