package tracker

import "github.com/peercdn/peercdn/signaling"

// The figures /stats.json serves (a node's own, or with ?scope=cluster
// every live node's summed) and the dashboard reads.

// SwarmStats is one swarm in /stats.json.
type SwarmStats struct {
	Origin    string `json:"origin,omitempty"`
	Content   string `json:"content"`
	Rendition string `json:"rendition,omitempty"`
	Peers     int    `json:"peers"`
	// Networks is how many network groups (networks, else /24 or /48:
	// households and offices) its viewers are in: four viewers behind one
	// office NAT are one.
	Networks int    `json:"networks"`
	Joins    uint64 `json:"joins"`
	UsageStats
}

// UsageStats is what viewers reported getting (signaling.Usage), summed.
type UsageStats struct {
	CDNBytes    int64 `json:"cdn_bytes"`
	P2PBytes    int64 `json:"p2p_bytes"`
	UploadBytes int64 `json:"upload_bytes"`
	StallMs     int64 `json:"stall_ms"`
	// Peer connections viewers opened, and negotiated ones that never
	// connected (signaling.Usage).
	PeersConnected int64 `json:"peers_connected"`
	PeersFailed    int64 `json:"peers_failed"`
}

// usageStats is u as /stats.json shows it: the same fields (so the types
// convert, and one addUsage sums both), snake_case names.
func usageStats(u signaling.Usage) UsageStats { return UsageStats(u) }

// add sums o into u (signaling.Usage.Add).
func (u *UsageStats) add(o UsageStats) { (*signaling.Usage)(u).Add(signaling.Usage(o)) }

// Stats is /stats.json.
type Stats struct {
	Node string `json:"node"`
	// Cluster is "up" or "degraded" on a clustered node, empty on a single
	// node. The figures below are this node's, or with ?scope=cluster every
	// live node's summed (cluster_stats.go).
	Cluster string `json:"cluster,omitempty"`
	// Nodes lists the nodes summed (?scope=cluster only), this one first.
	Nodes []NodeSummary `json:"nodes,omitempty"`
	// Partial marks a cluster view the store could not complete: this
	// node's figures alone.
	Partial  bool `json:"partial,omitempty"`
	Peers    int  `json:"peers"`
	Swarms   int  `json:"swarms"`
	Members  int  `json:"members"`
	Draining bool `json:"draining"`
	// Usage sums what this node's viewers reported since it started.
	Usage UsageStats `json:"usage"`
	// Rollout is the share of viewers on P2P and each cohort's figures.
	Rollout    RolloutStats `json:"rollout"`
	Listed     int          `json:"listed"`
	SwarmStats []SwarmStats `json:"swarm_stats"`
}

// NodeSummary is one node in a cluster-wide /stats.json.
type NodeSummary struct {
	Node     string     `json:"node"`
	Peers    int        `json:"peers"`
	Swarms   int        `json:"swarms"`
	Members  int        `json:"members"`
	Draining bool       `json:"draining"`
	Usage    UsageStats `json:"usage"`
}

// CohortStats is one cohort's figures in /stats.json: every origin's, or
// (in RolloutStats.OriginCohorts) one origin's.
type CohortStats struct {
	Origin string `json:"origin,omitempty"` // OriginCohorts only
	Cohort string `json:"cohort"`           // p2p or control
	// Viewers counts the cohort's agents connected now.
	Viewers int `json:"viewers"`
	// WatchMs is the viewing time the cohort's usage reports cover: the
	// denominator that makes the cohorts' bytes and stalls comparable.
	WatchMs int64      `json:"watch_ms"`
	Usage   UsageStats `json:"usage"`
}

// RolloutStats is the rollout in /stats.json.
type RolloutStats struct {
	P2PPercent int            `json:"p2p_percent"`
	Origins    map[string]int `json:"origins,omitempty"`
	Cohorts    []CohortStats  `json:"cohorts"`
	// OriginCohorts are the cohorts of each origin set apart (Origins),
	// figures counted since this node started, while the origin was set
	// apart.
	OriginCohorts []CohortStats `json:"origin_cohorts,omitempty"`
	// Sites is OriginCohorts under its old name, written and read for
	// nodes and dashboards of earlier releases. Deprecated: to be removed
	// in a later release.
	Sites []CohortStats `json:"sites,omitempty"`
}

// originCohorts is OriginCohorts, or Sites from a node of an earlier
// release.
func (r *RolloutStats) originCohorts() []CohortStats {
	if r.OriginCohorts != nil {
		return r.OriginCohorts
	}
	return r.Sites
}
