package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/peercdn/peercdn/democdn"
	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker"
	"github.com/peercdn/peercdn/tracker/turnserver"
	"github.com/peercdn/peercdn/web"
)

// loadConfig builds the configuration from, in rising precedence: defaults,
// the YAML file (--config or PEERCDN_CONFIG), PEERCDN_* environment
// variables, and flags.
func loadConfig(name string, args []string, extra func(*flag.FlagSet)) (tracker.Config, *flag.FlagSet, error) {
	// First pass: only to find --config; every flag must still parse.
	scratch := tracker.DefaultConfig()
	fs0 := flag.NewFlagSet(name, flag.ContinueOnError)
	fs0.SetOutput(ioDiscard{})
	path := bindFlags(fs0, &scratch)
	if extra != nil {
		extra(fs0)
	}
	if err := fs0.Parse(args); err != nil {
		// Let the real pass print usage and the error.
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		c := tracker.DefaultConfig()
		bindFlags(fs, &c)
		if extra != nil {
			extra(fs)
		}
		return c, fs, fs.Parse(args)
	}
	if *path == "" {
		*path = os.Getenv("PEERCDN_CONFIG")
	}
	cfg := tracker.DefaultConfig()
	if *path != "" {
		if err := tracker.LoadConfigFile(*path, &cfg); err != nil {
			return cfg, nil, fmt.Errorf("%s: %w", *path, err)
		}
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	bindFlags(fs, &cfg)
	if extra != nil {
		extra(fs)
	}
	if err := applyEnv(fs); err != nil {
		return cfg, fs, err
	}
	if err := fs.Parse(args); err != nil {
		return cfg, fs, err
	}
	return cfg, fs, cfg.Validate()
}

// envName is the environment variable that sets flag name.
func envName(flag string) string {
	return "PEERCDN_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets fs's flags from PEERCDN_* variables. A PEERCDN_ variable
// that names no flag is refused rather than ignored: a misspelt
// PEERCDN_ALLOWED_ORIGIN would otherwise leave the tracker open to every
// site. PEERCDN_TEST_* belong to the test suite.
func applyEnv(fs *flag.FlagSet) error {
	known := map[string]string{"PEERCDN_CONFIG": "config"}
	fs.VisitAll(func(f *flag.Flag) { known[envName(f.Name)] = f.Name })
	var unknown []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := known[k]; !ok && strings.HasPrefix(k, "PEERCDN_") && !strings.HasPrefix(k, "PEERCDN_TEST_") {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fmt.Errorf("unknown environment variable %s: no such setting (each flag --x-y is PEERCDN_X_Y)", strings.Join(unknown, ", "))
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := envName(f.Name)
		v, ok := os.LookupEnv(env)
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			shown := strconv.Quote(v)
			if secretFlag(f.Name) {
				shown = "(hidden)"
			}
			errs = append(errs, fmt.Errorf("%s=%s: %w", env, shown, err))
		}
	})
	return errors.Join(errs...)
}

// secretFlag says whether a flag's value must not be echoed in errors.
func secretFlag(name string) bool {
	return strings.Contains(name, "secret") || strings.Contains(name, "token")
}

type ioDiscard struct{}

func (ioDiscard) Write(p []byte) (int, error) { return len(p), nil }

// bindFlags binds a flag to every Config field an operator sets often; the
// rest are in the YAML file. It returns the --config destination.
func bindFlags(fs *flag.FlagSet, c *tracker.Config) *string {
	path := fs.String("config", "", "YAML config file (env PEERCDN_CONFIG)")
	fs.StringVar(&c.Listen, "listen", c.Listen, "HTTP listen address")
	fs.Var((*listFlag)(&c.AllowedOrigins), "allowed-origins", "comma-separated page origin patterns allowed to connect (empty: any)")
	fs.StringVar(&c.TokenSecret, "token-secret", c.TokenSecret, "HMAC secret for join tokens (empty: no tokens needed)")
	fs.StringVar(&c.STUNListen, "stun-listen", c.STUNListen, "UDP address of the built-in STUN server, named first in every welcome (empty: none)")
	fs.StringVar(&c.PublicHost, "public-host", c.PublicHost, "host name or IP viewers reach the STUN/TURN ports at (default: the host each viewer reached the tracker at)")
	fs.StringVar(&c.TURNListen, "turn-listen", c.TURNListen, "UDP address of the built-in TURN relay (empty: none; agents use it only with --allow-relay)")
	fs.StringVar(&c.TURNRelayIP, "turn-relay-ip", c.TURNRelayIP, "address relay allocations are reached at (default: --public-host if an IP, else --turn-listen's IP)")
	fs.StringVar(&c.TURNPorts, "turn-ports", c.TURNPorts, "relay port range min-max")
	fs.IntVar(&c.TURNBytesPerSecond, "turn-bytes-per-second", c.TURNBytesPerSecond, "cap on what one viewer's relay carries each way")
	fs.StringVar(&c.TURNSecret, "turn-secret", c.TURNSecret, "shared secret for TURN REST credentials (coturn's static-auth-secret), minted per viewer; --turn-listen makes one up if empty (env PEERCDN_TURN_SECRET)")
	fs.BoolVar(&c.AllowRelay, "allow-relay", c.AllowRelay, "let agents exchange segments through TURN relays")
	fs.Var((*iceFlag)(&c.ICEServers), "ice-servers", "comma-separated STUN/TURN URLs handed to agents (credentials: use the YAML file)")
	fs.IntVar(&c.Suggestions, "suggestions", c.Suggestions, "peers suggested to a newcomer")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", c.MaxMessageBytes, "largest frame accepted (bigger: close 1009)")
	fs.IntVar(&c.MaxSwarmsPerConn, "max-swarms-per-conn", c.MaxSwarmsPerConn, "swarms one connection may be in")
	fs.IntVar(&c.MaxPendingOffers, "max-pending-offers", c.MaxPendingOffers, "unanswered offers per connection (/announce: offers handed out per offer_ttl)")
	fs.DurationVar(&c.AnnounceInterval, "announce-interval", c.AnnounceInterval, "interval WebTorrent clients are told to announce at")
	fs.IntVar(&c.MaxPeersPerSwarm, "max-peers-per-swarm", c.MaxPeersPerSwarm, "peers one swarm may hold")
	fs.Float64Var(&c.MessagesPerSecond, "messages-per-second", c.MessagesPerSecond, "message rate per connection")
	fs.IntVar(&c.MessageBurst, "message-burst", c.MessageBurst, "message burst per connection")
	fs.Float64Var(&c.IPMessagesPerSecond, "ip-messages-per-second", c.IPMessagesPerSecond, "message rate per client IP")
	fs.IntVar(&c.IPMessageBurst, "ip-message-burst", c.IPMessageBurst, "message burst per client IP")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", c.MaxConnsPerIP, "connections per client IP")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "connections per node")
	fs.Var((*listFlag)(&c.TrustedProxies), "trusted-proxies", "comma-separated CIDRs whose X-Forwarded-For is trusted")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", c.HandshakeTimeout, "time a new connection has to say hello")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "close connections silent this long")
	fs.StringVar(&c.Integrity, "integrity", c.Integrity, "where segment hashes come from without an origin manifest: notary (the tracker fetches each segment itself), quorum (viewers' agreeing reports: colluders can win) or off")
	fs.IntVar(&c.HashQuorum, "hash-quorum", c.HashQuorum, "independent CDN reports that make a segment hash trusted (--integrity quorum)")
	fs.BoolVar(&c.HashDistinctNetworks, "hash-distinct-networks", c.HashDistinctNetworks, "quorum reporters must come from distinct /24 (/48) networks (--integrity quorum)")
	fs.BoolVar(&c.HashManifests, "hash-manifests", c.HashManifests, "the CDN publishes peercdn-hashes.json beside its segments (peercdn hash): agents look for it (--demo sets it)")
	fs.Var((*listFlag)(&c.NotaryCDNs), "notary-cdns", "comma-separated URL prefixes of CDNs the notary may fetch from (empty: any http(s) URL at a public address)")
	fs.Var((*listFlag)(&c.NotaryCDNs), "notary-origins", "deprecated: --notary-cdns")
	fs.BoolVar(&c.NotaryPrivate, "notary-private", c.NotaryPrivate, "let the notary fetch from loopback and private addresses (a CDN on the operator's own network; --demo sets it)")
	fs.IntVar(&c.NotaryFetches, "notary-fetches", c.NotaryFetches, "notary fetches at once per node")
	fs.StringVar(&c.Redis, "redis", c.Redis, "redis://host:port shared by all nodes of a cluster (empty: single node in memory)")
	fs.DurationVar(&c.MemberTTL, "member-ttl", c.MemberTTL, "a dead node's viewers leave other nodes' swarms within this")
	fs.DurationVar(&c.StatsInterval, "stats-interval", c.StatsInterval, "how often a clustered node shares its figures for the cluster-wide dashboard")
	fs.BoolVar(&c.RedisCluster, "redis-cluster", c.RedisCluster, "--redis is a Redis Cluster (more seeds: ?addr=host:port)")
	fs.IntVar(&c.P2PPercent, "p2p-percent", c.P2PPercent, "share of viewers that use P2P; the rest are a CDN-only control cohort (0: P2P off)")
	fs.StringVar(&c.AdminToken, "admin-token", c.AdminToken, "bearer token for the admin API, PUT /admin/rollout (empty: admin API off; env PEERCDN_ADMIN_TOKEN)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "on SIGTERM, wait this long for clients to leave")
	return path
}

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = nil
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

type iceFlag []signaling.ICEServer

func (f *iceFlag) String() string {
	var urls []string
	for _, s := range *f {
		urls = append(urls, s.URLs...)
	}
	return strings.Join(urls, ",")
}
func (f *iceFlag) Set(v string) error {
	*f = nil
	for _, u := range strings.Split(v, ",") {
		if u = strings.TrimSpace(u); u != "" {
			*f = append(*f, signaling.ICEServer{URLs: []string{u}})
		}
	}
	return nil
}

// demoFlags are serve's flags for the demo.
type demoFlags struct {
	on             bool
	noHashManifest bool // the demo origin publishes no peercdn-hashes.json
	latency        time.Duration
	kbps           int
	digests        bool // the demo origin sends Repr-Digest headers
	originListen   string
	stream         string // a folder to serve instead of the built-in sample stream
}

// serveFlags binds the flags serve has beyond the tracker's Config.
func serveFlags(demo *demoFlags, vendor *string, pprofAddr *string, trim *time.Duration) func(*flag.FlagSet) {
	return serveFlagsAll(demo, vendor, pprofAddr, trim, new(logFlags), new(tlsFlags))
}

// serveFlagsAll is serveFlags with the logging and TLS flags.
func serveFlagsAll(demo *demoFlags, vendor *string, pprofAddr *string, trim *time.Duration, lf *logFlags, tf *tlsFlags) func(*flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		fs.StringVar(&lf.level, "log-level", "info", "debug, info, warn or error")
		fs.StringVar(&lf.format, "log-format", "json", "json (one object a line, for a log pipeline) or text (key=value, for a terminal)")
		tf.bind(fs)
		fs.BoolVar(&demo.digests, "demo-cdn-digest", false, "the demo origin sends each segment's SHA-256 in a Repr-Digest header (RFC 9530), which the notary then reads with a HEAD instead of fetching a copy")
		fs.BoolVar(&demo.noHashManifest, "demo-no-hash-manifest", false, "the demo origin publishes no peercdn-hashes.json, as most CDNs (peers' bytes are checked against the notary only)")
		fs.DurationVar(&demo.latency, "demo-cdn-latency", 0, "the demo origin answers every request this much later (a CDN edge farther than loopback)")
		fs.IntVar(&demo.kbps, "demo-cdn-kbps", 0, "the demo origin sends each response at most this fast, in kbit/s (0: unpaced)")
		fs.StringVar(&demo.stream, "demo-stream", "", "the demo origin serves the HLS stream in this folder (master.m3u8 and one folder per rendition, as examples/make-stream.sh makes them) instead of the built-in one")
		fs.StringVar(&demo.originListen, "demo-origin-listen", "", "also serve the demo origin at / on this address, as a CDN on another origin (e.g. 127.0.0.1:8081)")
		fs.DurationVar(trim, "trim-memory", 15*time.Second, "after a quiet period this long, collect garbage and return memory to the OS (0: never)")
		fs.StringVar(pprofAddr, "pprof", "", "serve net/http/pprof on this address (keep it on loopback), e.g. 127.0.0.1:6060")
		fs.BoolVar(&demo.on, "demo", false, "also serve the demo: pages at /, /shaka.html and /dashjs.html, the sample stream at /demo/{live,vod}/master.m3u8 and as DASH at /demo/dash/{live,vod,vod-ranges,vod-list}/manifest.mpd, origin bytes at /demo/stats.json")
		fs.StringVar(vendor, "vendor-dir", "web/vendor", "folder with hls.min.js and shaka-player.compiled.js for the demo pages (make vendor)")
	}
}

func serve(args []string) error {
	var demo demoFlags
	var vendor, pprofAddr string
	var trim time.Duration
	var lf logFlags
	var tf tlsFlags
	cfg, fs, err := loadConfig("serve", args, serveFlagsAll(&demo, &vendor, &pprofAddr, &trim, &lf, &tf))
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := lf.newLogger(os.Stderr)
	if err != nil {
		return err
	}
	for _, k := range cfg.DeprecatedKeys() {
		log.Warn("config: a deprecated key", "key", k)
	}
	fs.Visit(func(f *flag.Flag) {
		if strings.HasPrefix(f.Usage, "deprecated: ") {
			log.Warn("a deprecated flag (or its PEERCDN_ variable)", "flag", f.Name, "use", strings.TrimPrefix(f.Usage, "deprecated: "))
		}
	})
	if demo.on && !cfg.NotaryPrivate && len(cfg.NotaryCDNs) == 0 {
		// The demo's origin is this process, on a loopback or LAN address.
		cfg.NotaryPrivate = true
		log.Info("demo: the notary may fetch from private addresses (the demo origin is this tracker)")
	}
	if demo.on && !demo.noHashManifest {
		cfg.HashManifests = true // the demo origin publishes them
	}
	if cfg.TURNListen != "" && cfg.TURNSecret == "" {
		// Only this node checks the credentials it mints: any secret will
		// do. A cluster, or a coturn beside it, needs one set for all.
		cfg.TURNSecret = rand.Text()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := tracker.New(cfg, log, reg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another process using it? set --listen)", cfg.Listen, err)
	}
	handler, err := withAssets(srv.Handler(), reg, log, demo, vendor)
	if err != nil {
		return err
	}
	if demo.on {
		log.Info("demo", "page", "/", "live", "/demo/live/master.m3u8", "vod", "/demo/vod/master.m3u8")
	}
	ln = srv.Listener(ln) // per-IP connection cap before any upgrade
	hs := srv.HTTPServer(handler)
	hs.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	scheme := "ws"
	var plain *http.Server
	if tf.on() {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		tcfg, redirect, err := tf.setup(port, log)
		if err != nil {
			ln.Close()
			return err
		}
		ln = tls.NewListener(ln, tcfg)
		hs.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){} // no HTTP/2: see setup
		scheme = "wss"
		if redirect != nil {
			pln, err := net.Listen("tcp", tf.httpListen)
			if err != nil {
				ln.Close()
				return fmt.Errorf("http listen on %s: %w", tf.httpListen, err)
			}
			plain = &http.Server{Handler: redirect, ReadHeaderTimeout: 10 * time.Second,
				ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
			go plain.Serve(pln)
			defer plain.Close()
			log.Info("http: ACME challenges and redirect to https", "addr", pln.Addr().String())
		}
	} else if tf.httpListen != "" {
		ln.Close()
		return errors.New("--http-listen redirects to HTTPS: set --tls-cert/--tls-key or --acme-domain")
	}
	mode := "single node, in memory"
	if cfg.Redis != "" {
		mode = "cluster via redis"
	}
	log.Info("serving", "addr", ln.Addr().String(), scheme, "/ws", "protocol", signaling.Version, "mode", mode,
		"node", srv.Node())

	if pprofAddr != "" {
		// Its own listener and mux: profiles never share the public port.
		pl, err := net.Listen("tcp", pprofAddr)
		if err != nil {
			return fmt.Errorf("pprof listen on %s: %w", pprofAddr, err)
		}
		pm := http.NewServeMux()
		pm.HandleFunc("/debug/pprof/", pprof.Index)
		pm.HandleFunc("/debug/pprof/profile", pprof.Profile)
		pm.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		pm.HandleFunc("/debug/pprof/trace", pprof.Trace)
		go http.Serve(pl, pm)
		log.Info("pprof", "addr", pl.Addr().String())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	closeICE, err := serveICE(ctx, srv, &cfg, log)
	if err != nil {
		return err
	}
	defer closeICE()
	if trim > 0 {
		go trimMemory(ctx, trim)
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stop() // a second signal kills at once
	log.Info("signal received: draining", "deadline", cfg.DrainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	srv.Drain(dctx)
	srv.Close()
	sctx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	hs.Shutdown(sctx)
	log.Info("stopped")
	return nil
}

// withAssets serves the browser loader and agent beside the tracker, and
// with demo the demo pages and the demo origin at /demo/.
func withAssets(tracker http.Handler, reg *prometheus.Registry, log *slog.Logger, demo demoFlags, vendor string) (http.Handler, error) {
	mux := http.NewServeMux()
	web.New(log, vendor).Register(mux, demo.on)
	if demo.on {
		var o *democdn.Origin
		var err error
		if demo.stream != "" {
			o, err = democdn.New(os.DirFS(demo.stream))
		} else {
			o, err = democdn.Sample()
		}
		if err != nil {
			return nil, err
		}
		o.NoHashManifest = demo.noHashManifest
		o.Digests = demo.digests
		o.Latency = demo.latency
		o.BytesPerSecond = demo.kbps * 1000 / 8
		if demo.originListen != "" {
			ln, err := net.Listen("tcp", demo.originListen)
			if err != nil {
				return nil, fmt.Errorf("demo origin listen on %s: %w", demo.originListen, err)
			}
			log.Info("demo origin", "addr", ln.Addr().String(), "live", "/live/master.m3u8", "vod", "/vod/master.m3u8")
			go http.Serve(ln, o)
		}
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "peercdn_demo_origin_bytes_total", Help: "Body bytes the demo origin sent.",
		}, func() float64 { return float64(o.Stats().Bytes) }))
		mux.Handle("/demo/", http.StripPrefix("/demo", o))
	}
	mux.Handle("/", tracker)
	return mux, nil
}

// serveICE starts the built-in STUN server and, if asked, the TURN relay.
// The default STUN port being taken (another STUN or TURN server on this
// host) is a warning, not a failure: the tracker works without it, on
// operators' ice_servers.
func serveICE(ctx context.Context, srv *tracker.Server, cfg *tracker.Config, log *slog.Logger) (func(), error) {
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	if cfg.STUNListen != "" {
		pc, err := net.ListenPacket("udp", cfg.STUNListen)
		switch {
		case err != nil && cfg.STUNListen == tracker.DefaultConfig().STUNListen:
			log.Warn("built-in STUN off: its default port is taken (set --stun-listen, or --stun-listen= to silence this)", "err", err)
		case err != nil:
			return nil, fmt.Errorf("stun listen on %s: %w", cfg.STUNListen, err)
		default:
			go srv.ServeSTUN(ctx, pc)
			closers = append(closers, func() { pc.Close() })
			log.Info("stun", "addr", pc.LocalAddr().String(), "public_host", cfg.PublicHost)
		}
	}
	if cfg.TURNListen != "" {
		pc, err := net.ListenPacket("udp", cfg.TURNListen)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("turn listen on %s: %w", cfg.TURNListen, err)
		}
		relayIP := net.ParseIP(cfg.TURNRelayIP)
		if relayIP == nil {
			relayIP = net.ParseIP(cfg.PublicHost)
		}
		if ua := pc.LocalAddr().(*net.UDPAddr); relayIP == nil && !ua.IP.IsUnspecified() {
			relayIP = ua.IP
		}
		if relayIP == nil {
			pc.Close()
			closeAll()
			return nil, errors.New("turn: set --turn-relay-ip (or --public-host to an IP address): the address viewers reach relays at")
		}
		lo, hi, _ := turnserver.PortRange(cfg.TURNPorts)
		bind := ""
		if ua := pc.LocalAddr().(*net.UDPAddr); ua.IP.IsUnspecified() {
			bind = "0.0.0.0"
		}
		t, err := srv.ServeTURN(turnserver.Config{PacketConn: pc, RelayIP: relayIP, RelayBind: bind,
			MinPort: lo, MaxPort: hi, BytesPerSecond: cfg.TURNBytesPerSecond})
		if err != nil {
			pc.Close()
			closeAll()
			return nil, fmt.Errorf("turn: %w", err)
		}
		closers = append(closers, func() { t.Close() })
		log.Info("turn", "addr", pc.LocalAddr().String(), "relay_ip", relayIP.String(), "ports", cfg.TURNPorts,
			"allow_relay", cfg.AllowRelay)
		if !cfg.AllowRelay {
			log.Warn("turn: agents use the relay only with --allow-relay")
		}
	}
	return closeAll, nil
}
