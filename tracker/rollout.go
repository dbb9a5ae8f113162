package tracker

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"hash/fnv"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/peercdn/peercdn/signaling"
)

// The rollout: the share of viewers that use P2P (p2p_percent). The rest
// are the control cohort: their agents load from the CDN only but report
// usage like the others, so /stats.json, the dashboard and the metrics set
// what P2P saves (CDN bytes per viewer-hour) beside what it costs (stall
// time per viewer-hour), measured on the same audience at the same time.
// 0 is the kill switch. PUT /admin/rollout changes it live, for the whole
// cluster; a viewer whose cohort changes is told with a policy message.
// WebTorrent clients (/announce) are outside it: their protocol cannot be
// told to stop.

// Cohorts, indexing hub.cohorts.
const (
	cohortP2P = iota
	cohortControl
	numCohorts
)

var cohortNames = [numCohorts]string{"p2p", "control"}

// inRollout reports whether the viewer keyed id is among the percent that
// use P2P. A hash of the id, so that raising percent only adds viewers to
// P2P and lowering it only takes them out: nobody flips back and forth.
// The id is the agent's session (cohortKey), the same over reconnects.
func inRollout(id string, percent int) bool {
	if percent >= 100 {
		return true
	}
	if percent <= 0 {
		return false
	}
	h := fnv.New32a()
	io.WriteString(h, id)
	return int(h.Sum32()%100) < percent
}

// cohortKey is what places c's viewer in a cohort: its agent's session,
// or without one, its peer id.
func (c *conn) cohortKey(p *peer) string {
	if c.session != "" {
		return "s:" + c.session
	}
	return p.id
}

func cohortOf(control bool) int {
	if control {
		return cohortControl
	}
	return cohortP2P
}

// CohortStats is one cohort's figures in /stats.json.
type CohortStats struct {
	Cohort string `json:"cohort"` // p2p or control
	// Viewers counts the cohort's agents connected now.
	Viewers int `json:"viewers"`
	// WatchMs is the viewing time the cohort's usage reports cover: the
	// denominator that makes the cohorts' bytes and stalls comparable.
	WatchMs int64      `json:"watch_ms"`
	Usage   UsageStats `json:"usage"`
}

// RolloutStats is the rollout in /stats.json.
type RolloutStats struct {
	P2PPercent int           `json:"p2p_percent"`
	Cohorts    []CohortStats `json:"cohorts"`
}

// cohortFigures is what a node's viewers of one cohort reported.
type cohortFigures struct {
	usage   signaling.Usage
	watchMs int64
}

// p2pOn is what a welcome or policy message carries for a cohort.
func p2pOn(control bool) *bool {
	on := !control
	return &on
}

// setCohort puts a newly welcomed peer in its cohort, under the rollout's
// lock so that a change of the rollout either sees the peer or is seen by
// it, and runs welcome (which sends the welcome) before any policy message
// can be queued behind it.
func (s *Server) setCohort(c *conn, p *peer, welcome func(control bool)) {
	s.rolloutMu.Lock()
	defer s.rolloutMu.Unlock()
	control := !inRollout(c.cohortKey(p), int(s.p2pPercent.Load()))
	c.control.Store(control)
	s.hub.add(p)
	welcome(control)
}

// applyRollout makes percent this node's rollout and moves the viewers
// whose cohort changes: into the control cohort, out of their swarms
// (here, and in the shared store after); either way, told with a policy
// message.
func (s *Server) applyRollout(percent int) {
	s.rolloutMu.Lock()
	defer s.rolloutMu.Unlock()
	if int(s.p2pPercent.Load()) == percent {
		return
	}
	s.log.Info("rollout changed", "p2p_percent", percent, "was", s.p2pPercent.Load())
	s.p2pPercent.Store(int32(percent))
	s.m.rolloutPercent.Set(float64(percent))
	var policy [2][]byte // encoded once for every viewer: [p2p off, p2p on]
	for i := range policy {
		policy[i], _ = signaling.Encode(&signaling.Message{Type: signaling.TypePolicy, P2P: p2pOn(i == 0)})
	}
	type left struct {
		k swarmKey
		m Member
	}
	var gone []left
	for _, p := range s.hub.localPeers() {
		control := !inRollout(p.conn.cohortKey(p), percent)
		if p.conn.control.Load() == control {
			continue
		}
		// Stored before leaving: a join racing this sees it after its own
		// hub.join and undoes itself (conn.join).
		p.conn.cohortAt.Store(time.Now().UnixNano())
		p.conn.control.Store(control)
		if control {
			for _, k := range s.hub.leaveAll(p) {
				gone = append(gone, left{k, Member{ID: p.id, Group: p.group}})
			}
			p.conn.enqueue(frame{b: policy[0]})
		} else {
			p.conn.enqueue(frame{b: policy[1]})
		}
	}
	if len(gone) > 0 && s.cluster != nil {
		// One store call per membership: not under the lock that welcomes
		// wait on. Those not removed in time expire with member_ttl (this
		// node no longer refreshes them).
		go s.leaveCluster(func(yield func(swarmKey, Member) bool) {
			for _, g := range gone {
				if !yield(g.k, g.m) {
					return
				}
			}
		})
	}
}

// pollRollout adopts the cluster's rollout, if one was set: every node
// follows a PUT on any node within a tick of clusterMaintain.
func (s *Server) pollRollout(ctx context.Context) error {
	percent, ok, err := s.cluster.Rollout(ctx)
	if err != nil {
		return err
	}
	if ok {
		s.applyRollout(percent)
	}
	return nil
}

// maxAdminBody bounds an admin request's body.
const maxAdminBody = 1024

// rolloutBody is GET and PUT /admin/rollout's JSON.
type rolloutBody struct {
	P2PPercent *int `json:"p2p_percent"`
}

// adminError is an admin endpoint's error body: a stable code and a text.
func adminError(w http.ResponseWriter, status int, code, text string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "message": text})
}

// adminFailures bounds wrong admin tokens, node-wide: guessing one is
// slow, and the operator with the right one is let in (it is checked
// first).
func newAdminFailures() *rate.Limiter { return rate.NewLimiter(1, 10) }

// admin checks an admin request's bearer token. Without admin_token the
// admin endpoints do not exist.
func (s *Server) admin(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.AdminToken == "" {
		adminError(w, http.StatusNotFound, "admin_off", "the admin API is off: set admin_token")
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(s.cfg.AdminToken))
	if ok && subtle.ConstantTimeCompare(a[:], b[:]) == 1 {
		return true
	}
	if !s.adminFailures.Allow() {
		s.m.rejects.WithLabelValues("admin_rate").Inc()
		w.Header().Set("Retry-After", "10")
		adminError(w, http.StatusTooManyRequests, "rate_limited", "too many wrong admin tokens: wait")
		return false
	}
	s.m.rejects.WithLabelValues("admin_auth").Inc()
	s.log.Warn("admin request with a wrong token", "from", s.clientIP(r), "path", r.URL.Path)
	w.Header().Set("WWW-Authenticate", `Bearer realm="peercdn admin"`)
	adminError(w, http.StatusUnauthorized, "unauthorized", "Authorization: Bearer <admin_token> required")
	return false
}

func (s *Server) serveRollout(w http.ResponseWriter, r *http.Request) {
	if !s.admin(w, r) {
		return
	}
	if r.Method == http.MethodPut {
		var body rolloutBody
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil || body.P2PPercent == nil {
			adminError(w, http.StatusBadRequest, "bad_request", `want {"p2p_percent": 0..100}`)
			return
		}
		percent := *body.P2PPercent
		if percent < 0 || percent > 100 {
			adminError(w, http.StatusBadRequest, "bad_request", "p2p_percent must be 0..100")
			return
		}
		if s.cluster != nil {
			// The store first: every node follows it, this one included (it
			// would go back to the store's value on its next poll).
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			err := s.cluster.SetRollout(ctx, percent)
			cancel()
			if err != nil {
				s.m.clusterErrors.WithLabelValues("rollout").Inc()
				adminError(w, http.StatusServiceUnavailable, "store_unavailable",
					"the shared store did not take the change, so no node applied it: retry, or restart the nodes with --p2p-percent")
				return
			}
		}
		s.applyRollout(percent)
		s.log.Info("rollout set by the admin API", "p2p_percent", percent, "from", s.clientIP(r))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	percent := int(s.p2pPercent.Load())
	json.NewEncoder(w).Encode(rolloutBody{P2PPercent: &percent})
}
