package tracker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/cluster"
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

// Rollout is the operator's P2P rollout: the share of viewers on P2P for
// every site, and for the sites (page origins, as in allowed_origins:
// scheme://host) set apart. "" is native agents, which send no Origin.
type Rollout struct {
	P2PPercent int            `json:"p2p_percent"`
	Origins    map[string]int `json:"origins,omitempty"`
}

// maxRolloutOrigins bounds the sites set apart.
const maxRolloutOrigins = 1000

// percent is the share for viewers of origin.
func (r *Rollout) percent(origin string) int {
	if p, ok := r.Origins[origin]; ok {
		return p
	}
	return r.P2PPercent
}

func (r *Rollout) equal(o *Rollout) bool {
	return r.P2PPercent == o.P2PPercent && maps.Equal(r.Origins, o.Origins)
}

// with returns a copy of r with origin's share set (origin "": every
// site's) or, for percent nil, origin's setting removed.
func (r *Rollout) with(origin string, all bool, percent *int) *Rollout {
	out := &Rollout{P2PPercent: r.P2PPercent, Origins: maps.Clone(r.Origins)}
	switch {
	case all:
		out.P2PPercent = *percent
	case percent == nil:
		delete(out.Origins, origin)
	default:
		if out.Origins == nil {
			out.Origins = map[string]int{}
		}
		out.Origins[origin] = *percent
	}
	return out
}

func (r *Rollout) valid() bool {
	if r.P2PPercent < 0 || r.P2PPercent > 100 || len(r.Origins) > maxRolloutOrigins {
		return false
	}
	for o, p := range r.Origins {
		if p < 0 || p > 100 || len(o) > maxOriginLen {
			return false
		}
	}
	return true
}

// maxOriginLen bounds an origin in the rollout.
const maxOriginLen = 256

// normOrigin is origin as the tracker keys swarms by it: lower-case
// scheme://host; ok false if it is not one.
func normOrigin(origin string) (string, bool) {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Scheme == "" || len(origin) > maxOriginLen {
		return "", false
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), true
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
	control := !inRollout(c.cohortKey(p), s.rollout.Load().percent(c.origin))
	c.control.Store(control)
	s.hub.add(p)
	welcome(control)
}

// applyRollout makes ro this node's rollout and moves the viewers whose
// cohort changes: into the control cohort, out of their swarms (here, and
// in the shared store after); either way, told with a policy message.
func (s *Server) applyRollout(ro *Rollout) {
	s.rolloutMu.Lock()
	defer s.rolloutMu.Unlock()
	if s.rollout.Load().equal(ro) {
		return
	}
	s.log.Info("rollout changed", "p2p_percent", ro.P2PPercent, "origins", ro.Origins)
	s.rollout.Store(ro)
	s.m.rolloutPercent.Set(float64(ro.P2PPercent))
	var policy [2][]byte // encoded once for every viewer: [p2p off, p2p on]
	for i := range policy {
		policy[i], _ = signaling.Encode(&signaling.Message{Type: signaling.TypePolicy, P2P: p2pOn(i == 0)})
	}
	type left struct {
		k cluster.Key
		m cluster.Member
	}
	var gone []left
	for _, p := range s.hub.localPeers() {
		control := !inRollout(p.conn.cohortKey(p), ro.percent(p.conn.origin))
		if p.conn.control.Load() == control {
			continue
		}
		// Stored before leaving: a join racing this sees it after its own
		// hub.join and undoes itself (conn.join).
		p.conn.cohortAt.Store(time.Now().UnixNano())
		p.conn.control.Store(control)
		if control {
			for _, k := range s.hub.leaveAll(p) {
				gone = append(gone, left{k, cluster.Member{ID: p.id, Group: p.group}})
			}
			p.conn.send(policy[0])
		} else {
			p.conn.send(policy[1])
		}
	}
	if len(gone) > 0 && s.cluster != nil {
		// One store call per membership: not under the lock that welcomes
		// wait on. Those not removed in time expire with member_ttl (this
		// node no longer refreshes them).
		go s.leaveCluster(func(yield func(cluster.Key, cluster.Member) bool) {
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
//
// A store that lost the rollout (Redis restarted without persistence) gets
// it back from the nodes that followed it: each stores its own if none is
// there and its own is not the configured p2p_percent (what an operator
// set, then). Nodes started since, on their configuration, then follow it
// too, instead of undoing a kill switch.
func (s *Server) pollRollout(ctx context.Context) error {
	b, ok, err := s.cluster.Rollout(ctx)
	if err != nil {
		return err
	}
	if ok {
		if bytes.Equal(b, s.polledRollout) {
			return nil // as last time: nothing to decode
		}
		ro, err := parseRollout(b)
		if err != nil {
			return err
		}
		s.polledRollout = b
		s.applyRollout(ro)
		return nil
	}
	s.polledRollout = nil
	own := s.rollout.Load()
	if own.equal(&Rollout{P2PPercent: s.cfg.P2PPercent}) {
		return nil
	}
	b, _ = json.Marshal(own)
	stored, err := s.cluster.SetRollout(ctx, b, true)
	if stored {
		s.log.Warn("the shared store had lost the rollout: stored this node's again", "p2p_percent", own.P2PPercent, "origins", own.Origins)
	}
	return err
}

// storedRollout is the cluster's rollout; nil if none was set.
func (s *Server) storedRollout(ctx context.Context) (*Rollout, error) {
	b, ok, err := s.cluster.Rollout(ctx)
	if err != nil || !ok {
		return nil, err
	}
	return parseRollout(b)
}

// parseRollout decodes a stored rollout.
func parseRollout(b []byte) (*Rollout, error) {
	var ro Rollout
	if err := json.Unmarshal(b, &ro); err != nil || !ro.valid() {
		return nil, fmt.Errorf("the stored rollout is not valid: %q", truncate(string(b), 80))
	}
	return &ro, nil
}

// maxAdminBody bounds an admin request's body.
const maxAdminBody = 1024

// rolloutBody is PUT /admin/rollout's JSON: a share for every site, or
// with origin, for that site.
type rolloutBody struct {
	Origin     *string `json:"origin"`
	P2PPercent *int    `json:"p2p_percent"`
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

// serveRollout is GET, PUT and DELETE /admin/rollout: read the rollout,
// set a share (every site's, or one origin's), or return an origin to
// every site's share (DELETE ?origin=).
func (s *Server) serveRollout(w http.ResponseWriter, r *http.Request) {
	if !s.admin(w, r) {
		return
	}
	var origin string
	all := false
	var percent *int
	switch r.Method {
	case http.MethodPut:
		var body rolloutBody
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil || body.P2PPercent == nil {
			adminError(w, http.StatusBadRequest, "bad_request", `want {"p2p_percent": 0..100} or {"origin": "https://site.example", "p2p_percent": 0..100}`)
			return
		}
		if p := *body.P2PPercent; p < 0 || p > 100 {
			adminError(w, http.StatusBadRequest, "bad_request", "p2p_percent must be 0..100")
			return
		}
		percent, all = body.P2PPercent, body.Origin == nil
		if body.Origin != nil {
			o, ok := normOrigin(*body.Origin)
			if !ok {
				adminError(w, http.StatusBadRequest, "bad_request", "origin must be scheme://host, as pages send it")
				return
			}
			origin = o
		}
	case http.MethodDelete:
		o, ok := normOrigin(r.URL.Query().Get("origin"))
		if !ok {
			adminError(w, http.StatusBadRequest, "bad_request", "DELETE /admin/rollout?origin=scheme://host")
			return
		}
		origin = o
	}
	if r.Method != http.MethodGet {
		ro, ok := s.changeRollout(w, r, origin, all, percent)
		if !ok {
			return
		}
		s.log.Info("rollout set by the admin API", "origin", origin, "all", all, "p2p_percent", ro.percent(origin), "from", s.clientIP(r))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(s.rollout.Load())
}

// changeRollout applies one change to the rollout: on a cluster, to the
// stored one (the store first: every node follows it, this one included,
// which would otherwise go back to the store's on its next poll).
func (s *Server) changeRollout(w http.ResponseWriter, r *http.Request, origin string, all bool, percent *int) (*Rollout, bool) {
	s.adminMu.Lock() // one change at a time, each on the last
	defer s.adminMu.Unlock()
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	base := s.rollout.Load()
	var err error
	if s.cluster != nil {
		var stored *Rollout
		if stored, err = s.storedRollout(ctx); stored != nil {
			base = stored // other nodes' changes are kept
		}
	}
	ro := base.with(origin, all, percent)
	if len(ro.Origins) > maxRolloutOrigins {
		adminError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("at most %d origins set apart", maxRolloutOrigins))
		return nil, false
	}
	if s.cluster != nil && err == nil {
		b, _ := json.Marshal(ro)
		_, err = s.cluster.SetRollout(ctx, b, false)
	}
	if err != nil {
		s.m.clusterErrors.WithLabelValues("rollout").Inc()
		adminError(w, http.StatusServiceUnavailable, "store_unavailable",
			"the shared store did not take the change, so no node applied it: retry, or restart the nodes with --p2p-percent")
		return nil, false
	}
	s.applyRollout(ro)
	return ro, true
}
