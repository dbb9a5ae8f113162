package tracker

import (
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// Limits on a connection before it is a WebSocket, where the per-IP
// accounting of conn.go cannot see it yet: one address holds at most
// MaxConnsPerIP+preUpgradeSlack TCP connections of any kind (trusted
// proxies excepted), each reading at most MaxHeaderBytes of headers, and a
// keep-alive connection idle for IdleHTTPTimeout is closed. So one IP costs
// a node at most about (64+16) x (16+4) KiB of header buffers before any
// upgrade, 1.6 MB, and (64+16) descriptors (TestHeaderFloodMemory: 600
// unfinished header blocks from one address grow heap and stacks 2.7 MB).
const (
	// MaxHeaderBytes bounds a request's header block (Go's default is 1 MB).
	MaxHeaderBytes = 16 << 10
	// IdleHTTPTimeout closes keep-alive connections between requests.
	IdleHTTPTimeout = 30 * time.Second
	// preUpgradeSlack: connections one IP may hold beyond max_conns_per_ip
	// (page assets, metrics scrapes, connections being upgraded).
	preUpgradeSlack = 16
)

// Listener wraps ln so that no client address holds more than
// max_conns_per_ip + 16 connections at once; past it a new connection is
// closed at once (counted as rejects{reason="ip_tcp_conns"}). Addresses of
// trusted_proxies are not limited: their clients are, after the upgrade.
func (s *Server) Listener(ln net.Listener) net.Listener {
	return &ipLimitListener{Listener: ln, s: s, max: s.cfg.MaxConnsPerIP + preUpgradeSlack, conns: map[string]int{}}
}

type ipLimitListener struct {
	net.Listener
	s   *Server
	max int

	mu    sync.Mutex
	conns map[string]int
}

func (l *ipLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		if l.s.trusted(net.ParseIP(host)) {
			return c, nil
		}
		l.mu.Lock()
		if l.conns[host] >= l.max {
			l.mu.Unlock()
			l.s.m.rejects.WithLabelValues("ip_tcp_conns").Inc()
			c.Close()
			continue
		}
		l.conns[host]++
		l.mu.Unlock()
		return &countedConn{Conn: c, l: l, host: host}, nil
	}
}

// countedConn gives its address's place back when closed.
type countedConn struct {
	net.Conn
	l    *ipLimitListener
	host string
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.conns[c.host]--; c.l.conns[c.host] <= 0 {
			delete(c.l.conns, c.host)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// SyscallConn exposes the socket, for the idle poller (wsconn.Poller).
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, syscall.EINVAL
	}
	return sc.SyscallConn()
}

// HTTPServer is an http.Server for h with the limits above: header size,
// header read time (handshake_timeout) and keep-alive idle time. Serve it
// on s.Listener(ln).
func (s *Server) HTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.HandshakeTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		IdleTimeout:       IdleHTTPTimeout,
	}
}
