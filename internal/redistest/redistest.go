// Package redistest runs a real redis-server on a free loopback port for
// tests, and can stop and restart it on the same port to test outages.
package redistest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is one redis-server process (or none, while stopped).
type Server struct {
	t     testing.TB
	port  int
	dir   string
	cmd   *exec.Cmd
	extra []string // more redis-server arguments
}

// Start launches redis-server, skipping the test when it is not installed
// (failing instead under CI=true, where the Makefile must have installed it).
func Start(t testing.TB) *Server {
	t.Helper()
	s := Stopped(t)
	s.Restart()
	return s
}

// Stopped reserves a port for a server that is not running yet: Restart
// starts it. For tests of a store that is unreachable at first.
func Stopped(t testing.TB) *Server {
	t.Helper()
	Need(t)
	s := &Server{t: t, port: freePort(t), dir: t.TempDir()}
	t.Cleanup(s.Stop)
	return s
}

// Need skips t when redis-server is not installed, or fails it under
// CI=true, where the Makefile must have installed it.
func Need(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not installed: `make deps` installs it")
		}
		t.Skip("redis-server not installed (make deps installs it)")
	}
}

// URL is redis://127.0.0.1:<port>.
func (s *Server) URL() string { return "redis://127.0.0.1:" + strconv.Itoa(s.port) }

// Addr is 127.0.0.1:<port>.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Stop kills the server (as a crash would: no persistence, state lost).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port, empty, and waits until
// it accepts connections.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--protected-mode", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"))
	cmd.Args = append(cmd.Args, s.extra...)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server did not listen on %s: %v\n%s", s.Addr(), err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(fmt.Errorf("free port: %w", err))
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Cluster is a Redis Cluster of redis-server processes, one master per
// slot range, no replicas.
type Cluster struct {
	nodes []*Server
}

// StartCluster launches n (>= 3) cluster-enabled servers and joins them
// with redis-cli --cluster create.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	Need(t)
	c := &Cluster{}
	var addrs []string
	for range n {
		// The cluster bus listens on port+10000: keep both below 65536.
		s := &Server{t: t, port: freePortBelow(t, 55000), dir: t.TempDir(),
			extra: []string{"--cluster-enabled", "yes", "--cluster-node-timeout", "2000"}}
		s.Restart()
		t.Cleanup(s.Stop)
		c.nodes = append(c.nodes, s)
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		for _, s := range c.nodes {
			out, _ := exec.Command("redis-cli", "-p", strconv.Itoa(s.port), "cluster", "info").Output()
			ok = ok && strings.Contains(string(out), "cluster_state:ok")
		}
		if ok {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatal("redis cluster did not reach cluster_state:ok")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// URL names the first node, with the others as ?addr= seeds (go-redis's
// ParseClusterURL form).
func (c *Cluster) URL() string {
	u := "redis://" + c.nodes[0].Addr()
	for i, s := range c.nodes[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + s.Addr()
	}
	return u
}

func freePortBelow(t testing.TB, limit int) int {
	for range 100 {
		p := 20000 + rand.IntN(limit-20000)
		l1, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		l1.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return p
	}
	t.Fatal("no free port pair")
	return 0
}
