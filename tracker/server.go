// Package tracker is the peercdn signaling service: it introduces viewers of
// the same swarm to each other and relays their WebRTC offers, answers and
// ICE candidates, within configurable limits.
package tracker

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peercdn/peercdn/tracker/wsconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/cluster"
)

// Server is one tracker node. Create it with New, serve Handler, stop it
// with Drain.
type Server struct {
	cfg Config
	log *slog.Logger
	m   *metrics
	hub *hub
	wt  *wtHub
	// transport is the WebSocket settings every connection shares, its
	// idle poller among them.
	transport wsconn.Options
	gather    prometheus.Gatherer
	proxies   []*net.IPNet
	groups    []groupPrefix // Config.Networks, longest prefix first
	secret    []byte

	draining atomic.Bool

	// rollout is the rollout now (rollout.go); rolloutMu orders its
	// changes with welcomes.
	rollout       atomic.Pointer[Rollout]
	rolloutMu     sync.Mutex
	adminMu       sync.Mutex    // admin changes, one at a time
	adminFailures *rate.Limiter // wrong admin tokens (rollout.go)
	polledRollout []byte        // the store's rollout as last polled (clusterMaintain's)

	clusterView clusterView // ?scope=cluster, cached (cluster_stats.go)

	// testHookUpgraded, if set, runs between a WebSocket's upgrade and its
	// registration (tests: a drain that starts in between).
	testHookUpgraded func()

	// stunPort and turnPort are the built-in STUN and TURN ports handed
	// out in welcomes; 0 while not serving (ice.go).
	stunPort, turnPort atomic.Int32

	notaryClient *http.Client
	notarySem    chan struct{}
	notaryQueued atomic.Int64  // fetches queued or running
	digests      digestOrigins // CDN origins whose digest headers spare the notary's fetch

	// cluster is nil on a single node. clusterStop ends its loops.
	cluster     cluster.Cluster
	clusterStop chan struct{}
	clusterWG   sync.WaitGroup
	closeOnce   sync.Once

	mu    sync.Mutex
	conns map[*conn]struct{}
	ips   map[string]*ipEntry
	// penalties refuses addresses whose connections keep being closed
	// for strikes (penalty.go).
	penalties penaltyBox
	wg        sync.WaitGroup // one per connection handler
}

// ipEntry is the state shared by all connections of one client IP.
type ipEntry struct {
	conns   int
	limiter *rate.Limiter
}

// New validates cfg and builds a node: a single node in memory, or a node
// of the cluster that shares cfg.Redis. Metrics go to a fresh registry
// unless reg is given. Close releases what a clustered node holds.
func New(cfg Config, log *slog.Logger, reg *prometheus.Registry) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	var cl cluster.Cluster
	if cfg.Redis != "" {
		rc, err := cluster.NewRedis(cluster.RedisOptions{URL: cfg.Redis, Cluster: cfg.RedisCluster, MemberTTL: cfg.MemberTTL, Log: log})
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		cl = rc
	}
	return NewClustered(cfg, log, reg, cl)
}

// NewClustered builds a node that shares swarms through cl (nil: a single
// node). The node owns cl and closes it in Close.
func NewClustered(cfg Config, log *slog.Logger, reg *prometheus.Registry, cl cluster.Cluster) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{
		cfg:    cfg,
		log:    log.With("component", "tracker"),
		gather: reg,
		conns:  make(map[*conn]struct{}),
		ips:    make(map[string]*ipEntry),
		secret: []byte(cfg.TokenSecret),
	}
	for _, p := range cfg.TrustedProxies {
		_, n, _ := net.ParseCIDR(p) // Validate checked it
		s.proxies = append(s.proxies, n)
	}
	s.groups = parseNetworks(cfg.Networks)
	s.notaryClient = newNotaryClient(len(cfg.NotaryCDNs) == 0 && !cfg.NotaryPrivate)
	s.notarySem = make(chan struct{}, cfg.NotaryFetches)
	s.m = newMetrics(reg)
	s.m.ready.Set(1)
	s.rollout.Store(&Rollout{P2PPercent: cfg.P2PPercent})
	s.adminFailures = newAdminFailures()
	s.m.rolloutPercent.Set(float64(cfg.P2PPercent))
	node := cluster.NewNodeID()
	if cl != nil {
		node = cl.Node()
	}
	s.hub = newHub(&s.cfg, s.m, node, cl != nil)
	s.wt = newWTHub(&s.cfg)
	s.transport = wsconn.Options{
		MaxMessageBytes: cfg.MaxMessageBytes,
		SendQueue:       cfg.SendQueue,
		SendQueueBytes:  cfg.SendQueueBytes,
		WriteTimeout:    cfg.WriteTimeout,
		Poller:          wsconn.NewPoller(),
		Rejected:        func(reason string) { s.m.rejects.WithLabelValues(reason).Inc() },
		Delivered:       func(d time.Duration) { s.m.relay.Observe(d.Seconds()) },
	}
	if cl != nil {
		state := func() float64 {
			if cl.Up() {
				return 1
			}
			return 0
		}
		s.m.clusterState.Store(&state)
		if pf, ok := cl.(interface{ PingFailures() uint64 }); ok {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "peercdn_tracker_cluster_ping_failures_total",
				Help: "Health checks the shared store (Redis) did not answer, from the node's first."},
				func() float64 { return float64(pf.PingFailures()) }))
		}
		s.cluster = cl
		s.clusterStop = make(chan struct{})
		s.clusterWG.Add(2)
		go s.clusterInbox()
		go s.clusterMaintain()
	}
	if len(cfg.AllowedOrigins) == 0 {
		s.log.Warn("allowed_origins is empty: pages of any origin may use this tracker")
	}
	if cfg.TokenSecret == "" {
		s.log.Info("token_secret is empty: joins need no token")
	}
	return s, nil
}

// Node returns the node's id, the prefix of its peers' ids.
func (s *Server) Node() string { return s.hub.node }

// Config returns the configuration the node runs with.
func (s *Server) Config() Config { return s.cfg }

// dashboardHTML is /dashboard: this node's viewers, swarms, offload and
// stalls, drawn from /stats.json every 2 s.
//
//go:embed dashboard.html
var dashboardHTML []byte

// Handler serves /ws, /announce, /healthz, /readyz, /metrics, /stats.json
// and /dashboard.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWS)
	mux.HandleFunc("GET /admin/rollout", s.serveRollout)
	mux.HandleFunc("PUT /admin/rollout", s.serveRollout)
	mux.HandleFunc("DELETE /admin/rollout", s.serveRollout)
	mux.HandleFunc("GET /announce", s.serveWS) // WebTorrent tracker protocol
	mux.HandleFunc("GET /announce/", s.serveWS)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		if s.cluster != nil && !s.cluster.Up() {
			// Still 200: every node shares the store, so failing readiness
			// would take the whole fleet out of the load balancer while each
			// node can still serve its own viewers.
			w.Header().Set("X-Peercdn-Degraded", "redis")
			w.Write([]byte("degraded: shared store unreachable, matching this node's viewers only\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /dashboard", func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		// The page's own inline script and style, and reads of stats.json:
		// nothing else, whatever a content name holds.
		h.Set("Content-Security-Policy", "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		w.Write(dashboardHTML)
	})
	mux.HandleFunc("GET /stats.json", func(w http.ResponseWriter, r *http.Request) {
		var st Stats
		switch r.URL.Query().Get("scope") {
		case "", "node":
			st = s.localStats(s.cfg.StatsSwarms)
		case "cluster":
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			st = s.clusterStats(ctx)
			cancel()
		default:
			http.Error(w, "scope is node or cluster", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(st)
	})
	return mux
}

// Counts reports welcomed peers, swarms and open connections (for tests and
// leak checks).
func (s *Server) Counts() (peers, swarms, conns int) {
	peers, swarms = s.hub.counts()
	s.mu.Lock()
	conns = len(s.conns)
	s.mu.Unlock()
	return
}

func (s *Server) reject(w http.ResponseWriter, status int, reason, text string) {
	s.m.rejects.WithLabelValues(reason).Inc()
	http.Error(w, text, status)
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		s.reject(w, http.StatusServiceUnavailable, "draining", "tracker node is draining: connect to another node")
		return
	}
	origin, ok := s.checkOrigin(r)
	if !ok {
		s.reject(w, http.StatusForbidden, "origin", "origin not allowed by this tracker's allowed_origins")
		return
	}
	ip := s.clientIP(r)
	if wait, boxed := s.penalties.refused(ip, time.Now()); boxed {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		s.reject(w, http.StatusTooManyRequests, "ip_penalty", "too many connections from this address were closed for floods: retry later")
		return
	}
	ipe, status, reason := s.admit(ip)
	if status != 0 {
		s.reject(w, status, reason, "too many connections: "+reason)
		return
	}
	nc, prefix, err := wsconn.Upgrade(w, r, s.cfg.WriteTimeout)
	if err != nil {
		s.release(ip, nil)
		s.m.rejects.WithLabelValues("upgrade").Inc()
		return
	}
	c := newConn(s, nc, prefix, ip, origin, ipe)
	c.host = requestHost(r.Host)
	if sess := r.URL.Query().Get(signaling.SessionParam); signaling.ValidSession(sess) {
		c.session = sess // anything else: as if none (the peer id decides the cohort)
	}
	if strings.HasPrefix(r.URL.Path, "/announce") {
		c.wt = &wtConn{peers: map[wtKey]*wtPeer{}}
	}
	if s.testHookUpgraded != nil {
		s.testHookUpgraded()
	}
	s.mu.Lock()
	if s.draining.Load() {
		// Drain began during the upgrade and has counted the connections
		// it waits for: this one goes elsewhere rather than join them.
		s.mu.Unlock()
		wsconn.GoAway(nc)
		s.release(ip, nil)
		s.m.rejects.WithLabelValues("draining").Inc()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1) // under mu, as Drain's draining flag: before its Wait, or not at all
	s.mu.Unlock()
	s.m.conns.Inc()
	// A fresh goroutine reads, and net/http's returns: its stack, grown deep
	// by the upgrade, would otherwise stay with the connection for its life.
	c.start(func() {
		s.release(ip, c)
		s.m.conns.Dec()
		s.wg.Done()
	})
}

// admit counts a new connection against the node and IP limits.
func (s *Server) admit(ip string) (*ipEntry, int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) >= s.cfg.MaxConns {
		return nil, http.StatusServiceUnavailable, "node_full"
	}
	e := s.ips[ip]
	if e == nil {
		e = &ipEntry{limiter: rate.NewLimiter(rate.Limit(s.cfg.IPMessagesPerSecond), s.cfg.IPMessageBurst)}
		s.ips[ip] = e
	}
	if e.conns >= s.cfg.MaxConnsPerIP {
		if e.conns == 0 {
			delete(s.ips, ip)
		}
		return nil, http.StatusTooManyRequests, "ip_conns"
	}
	e.conns++
	return e, 0, ""
}

func (s *Server) release(ip string, c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c != nil {
		delete(s.conns, c)
	}
	if e := s.ips[ip]; e != nil {
		e.conns--
		if e.conns <= 0 {
			delete(s.ips, ip)
		}
	}
}

// checkOrigin applies allowed_origins and returns the normalized origin
// ("scheme://host") that scopes the connection's swarms.
func (s *Server) checkOrigin(r *http.Request) (string, bool) {
	o := r.Header.Get("Origin")
	if o == "" {
		// Not a browser: native agents and tools. Browsers always send Origin
		// on WebSocket requests, so no page of another site gets here; a
		// native client could forge any Origin anyway (join tokens are what
		// authenticate).
		return "", true
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return "", false
	}
	norm := strings.ToLower(u.Scheme + "://" + u.Host)
	if len(s.cfg.AllowedOrigins) == 0 {
		return norm, true
	}
	for _, p := range s.cfg.AllowedOrigins {
		target := strings.ToLower(u.Host)
		if strings.Contains(p, "://") {
			target = norm
		}
		if ok, _ := path.Match(strings.ToLower(p), target); ok {
			return norm, true
		}
	}
	return "", false
}

// clientIP is the TCP peer, or the X-Forwarded-For client when the peer is a
// trusted proxy.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(s.proxies) == 0 || !s.trusted(net.ParseIP(host)) {
		return host
	}
	hops := strings.Split(r.Header.Get("X-Forwarded-For"), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		ip := net.ParseIP(strings.TrimSpace(hops[i]))
		if ip == nil {
			break
		}
		if !s.trusted(ip) {
			return ip.String()
		}
	}
	return host
}

func (s *Server) trusted(ip net.IP) bool {
	for _, n := range s.proxies {
		if ip != nil && n.Contains(ip) {
			return true
		}
	}
	return false
}

// closeGrace is how long a draining node waits, after its deadline, for
// clients to complete the close handshake before dropping them.
const closeGrace = time.Second

// Drain tells every client to go away, waits for them to leave until ctx
// ends, then closes the rest. The node refuses new connections from the start.
func (s *Server) Drain(ctx context.Context) error {
	s.mu.Lock() // with serveWS's registration: every connection is counted below, or refused
	if s.draining.Swap(true) {
		s.mu.Unlock()
		return errors.New("tracker: already draining")
	}
	s.m.ready.Set(0)
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.log.Info("draining", "connections", len(conns))
	spread := int64(s.cfg.RetrySpread / time.Millisecond)
	for _, c := range conns {
		retry := 0
		if spread > 0 {
			retry = int(rand.Int64N(spread + 1))
		}
		c.goAway(retry)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	left := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		left = append(left, c)
	}
	s.mu.Unlock()
	s.log.Info("drain deadline: closing remaining connections", "connections", len(left))
	for _, c := range left {
		c.close(wsconn.StatusGoingAway, "node shutting down")
	}
	// A client that does not answer the close handshake is not waited for:
	// its handler ends by itself within the handshake timeout (5 s), and a
	// process that is exiting need not wait for it.
	select {
	case <-done:
	case <-time.After(closeGrace):
		s.log.Info("drain: some clients did not complete the close handshake")
	}
	return nil
}

// Close stops a clustered node's loops and its store client; the node's
// members expire from the store by themselves. Call it after Drain.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.transport.Poller.Close()
		if s.cluster == nil {
			return
		}
		close(s.clusterStop)
		s.clusterWG.Wait()
		s.cluster.Close()
	})
	return nil
}
