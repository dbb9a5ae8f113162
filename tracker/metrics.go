package tracker

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the tracker's Prometheus series, all prefixed peercdn_tracker_.
type metrics struct {
	conns    prometheus.Gauge
	swarms   prometheus.Gauge
	members  prometheus.Gauge
	messages *prometheus.CounterVec
	rejects  *prometheus.CounterVec
	relay    prometheus.Histogram
	ready    prometheus.Gauge

	hashes        prometheus.Counter
	banned        prometheus.Counter
	notaryFetches prometheus.Counter
	notaryDigests prometheus.Counter
	// The built-in STUN and TURN (ice.go).
	stun            *prometheus.CounterVec
	turnBytes       prometheus.Counter
	turnAllocations prometheus.Counter

	// suggestedNear and suggestedOther count peers suggested to a newcomer
	// (/ws) or handed an offer (/announce): of its network group, or not.
	suggestedNear, suggestedOther prometheus.Counter

	// What viewers' players got, as their agents report it with pings:
	// bytes by source (cdn, p2p) and uploaded, and stall time.
	viewerCDN, viewerP2P, viewerUp prometheus.Counter
	viewerStall                    prometheus.Counter
	viewerPeersOK, viewerPeersFail prometheus.Counter

	// The rollout (rollout.go): its p2p_percent, and per cohort what the
	// viewers reported and the viewing time their reports cover.
	rolloutPercent prometheus.Gauge
	cohorts        [numCohorts]cohortMetrics

	clusterUp prometheus.GaugeFunc
	// clusterState backs clusterUp: read at scrape time, so the gauge is
	// right even while a refresh waits on an unreachable Redis.
	clusterState  atomic.Pointer[func() float64]
	clusterIn     prometheus.Counter
	clusterOut    prometheus.Counter
	clusterErrors *prometheus.CounterVec
}

// cohortMetrics are one rollout cohort's series.
type cohortMetrics struct {
	cdn, p2p, stall, watch prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "peercdn_tracker_connections", Help: "Open signaling WebSocket connections."}),
		swarms: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "peercdn_tracker_swarms", Help: "Swarms with at least one peer."}),
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "peercdn_tracker_swarm_members", Help: "Peer memberships summed over swarms."}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peercdn_tracker_messages_total", Help: "Messages accepted from agents, by type."}, []string{"type"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peercdn_tracker_rejects_total", Help: "Messages, connections and joins refused, by reason."}, []string{"reason"}),
		relay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "peercdn_tracker_relay_seconds",
			Help:    "Time from reading a relayed offer/answer/candidate to writing it to its target.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50µs .. 1.6s
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "peercdn_tracker_ready", Help: "1 when the node takes new connections, 0 while draining."}),
		hashes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peercdn_tracker_hashes_accepted_total", Help: "Segment hashes the tracker vouched for (its notary's, or the quorum's) and pushed to their swarm."}),
		banned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peercdn_tracker_peers_banned_total", Help: "Peers removed from a swarm: their bytes reported corrupt by distinct peers, or their hash contradicted by the notary."}),
		notaryFetches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peercdn_tracker_notary_fetches_total", Help: "Segments the notary fetched from the CDN whole (failures are rejects: notary_failed)."}),
		notaryDigests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peercdn_tracker_notary_digests_total", Help: "Segments the notary vouched for by the digest their CDN publishes (Repr-Digest, Content-Digest, x-amz-checksum-sha256), read with a HEAD: no copy fetched."}),
		stun: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peercdn_tracker_stun_requests_total", Help: "Datagrams on the built-in STUN port, by result: answered, rate_limited (past 20/s from one address), malformed, unsupported (STUN but not a plain binding request)."}, []string{"result"}),
		turnBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peercdn_tracker_turn_relayed_bytes_total", Help: "Bytes the built-in TURN relay carried, both ways."}),
		turnAllocations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peercdn_tracker_turn_allocations_total", Help: "Relay allocations made on the built-in TURN."}),
		clusterUp: nil, // below: it reads m
		clusterIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peercdn_tracker_cluster_received_total", Help: "Envelopes received from other nodes."}),
		clusterOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peercdn_tracker_cluster_published_total", Help: "Relayed messages handed to the bus for other nodes."}),
		clusterErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peercdn_tracker_cluster_errors_total", Help: "Failed calls to the shared store, by operation."}, []string{"op"}),
	}
	m.clusterUp = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "peercdn_tracker_cluster_up",
		Help: "1 when the shared store (Redis) answers, 0 when degraded to this node's viewers; -1 on a single node."},
		func() float64 {
			if f := m.clusterState.Load(); f != nil {
				return (*f)()
			}
			return -1
		})
	suggested := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peercdn_tracker_suggestions_total",
		Help: "Peers suggested to a newcomer (/ws) or handed an offer (/announce), by whether they share its network group (near) or not (other)."}, []string{"peer"})
	m.suggestedNear, m.suggestedOther = suggested.WithLabelValues("near"), suggested.WithLabelValues("other")
	viewerBytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peercdn_viewer_bytes_total",
		Help: "Segment bytes viewers' players got, by source (cdn, p2p), and uploaded to other viewers (upload), as their agents report them."}, []string{"source"})
	m.viewerCDN, m.viewerP2P, m.viewerUp = viewerBytes.WithLabelValues("cdn"), viewerBytes.WithLabelValues("p2p"), viewerBytes.WithLabelValues("upload")
	m.viewerStall = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "peercdn_viewer_stall_seconds_total", Help: "Time viewers' players stalled (rebuffering), as their agents report it."})
	viewerPeers := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peercdn_viewer_peer_connections_total",
		Help: "Viewers' peer connections by outcome: connected, or failed (negotiated, never connected: NAT and firewalls), as their agents report them."}, []string{"result"})
	m.viewerPeersOK, m.viewerPeersFail = viewerPeers.WithLabelValues("connected"), viewerPeers.WithLabelValues("failed")
	m.rolloutPercent = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "peercdn_rollout_p2p_percent", Help: "Share of viewers the rollout puts on P2P; the rest are the CDN-only control cohort."})
	cohortBytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peercdn_cohort_bytes_total",
		Help: "Segment bytes viewers' players got, by rollout cohort (p2p, control) and source (cdn, p2p), as their agents report them."}, []string{"cohort", "source"})
	cohortStall := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peercdn_cohort_stall_seconds_total", Help: "Time viewers' players stalled, by rollout cohort."}, []string{"cohort"})
	cohortWatch := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peercdn_cohort_watch_seconds_total",
		Help: "Viewing time covered by viewers' usage reports, by rollout cohort: the denominator for per-hour bytes and stalls."}, []string{"cohort"})
	for i, name := range cohortNames {
		m.cohorts[i] = cohortMetrics{cdn: cohortBytes.WithLabelValues(name, "cdn"), p2p: cohortBytes.WithLabelValues(name, "p2p"),
			stall: cohortStall.WithLabelValues(name), watch: cohortWatch.WithLabelValues(name)}
	}
	reg.MustRegister(m.rolloutPercent, cohortBytes, cohortStall, cohortWatch)
	reg.MustRegister(m.conns, m.swarms, m.members, m.messages, m.rejects, m.relay, m.ready,
		m.hashes, m.banned, m.notaryFetches, m.notaryDigests, m.stun, m.turnBytes, m.turnAllocations, m.clusterUp, m.clusterIn, m.clusterOut, m.clusterErrors, suggested, viewerBytes, m.viewerStall, viewerPeers)
	for _, op := range []string{"join", "leave", "refresh", "publish", "counts", "stats", "rollout"} {
		m.clusterErrors.WithLabelValues(op)
	}
	// Known label values exist from the start, so dashboards show zeros.
	for _, t := range []string{"hello", "join", "leave", "peers", "offer", "answer", "candidate", "ping", "hash", "report"} {
		m.messages.WithLabelValues(t)
	}
	// The refusals an operator alerts on (docs/operations.md): zero until
	// the first, rather than absent.
	for _, r := range []string{"origin", "node_full", "strikes", "too_big", "ip_conns", "draining"} {
		m.rejects.WithLabelValues(r)
	}
	return m
}
