package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peercdn/peercdn/examples"
	"github.com/peercdn/peercdn/internal/redistest"
	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/sim"
	"github.com/peercdn/peercdn/tracker"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the peercdn binary once per test run.
func binary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "peercdn-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "peercdn")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// node is one `peercdn serve` process on loopback.
type node struct {
	addr string
	cmd  *exec.Cmd
	done chan error
}

func (n *node) ws() string   { return "ws://" + n.addr + "/ws" }
func (n *node) http() string { return "http://" + n.addr }

// alive reports whether the process is still running.
func (n *node) alive() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

func startServe(t *testing.T, args ...string) *node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	// The test origins are on 127.0.0.1, where the notary connects only
	// when allowed.
	cmd := exec.Command(binary(t), append([]string{"serve", "--listen", addr, "--notary-private"}, args...)...)
	cmd.Stderr = io.Discard
	if testing.Verbose() && os.Getenv("PEERCDN_TEST_LOGS") != "" {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &node{addr: addr, cmd: cmd, done: make(chan error, 1)}
	go func() { n.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-n.done
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := http.Get(n.http() + "/healthz"); err == nil {
			resp.Body.Close()
			return n
		}
		if time.Now().After(deadline) || !n.alive() {
			t.Fatalf("serve %v did not come up", args)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of an unlabelled series in /metrics.
func metric(t *testing.T, n *node, name string) float64 {
	t.Helper()
	_, body := httpGet(t, n.http()+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	t.Fatalf("%s not in /metrics", name)
	return 0
}

// sigClient is a bare signaling client for matching checks.
type sigClient struct {
	*signaling.Client
	t *testing.T
}

func dialNode(t *testing.T, n *node) *sigClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := signaling.Dial(ctx, n.ws(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return &sigClient{c, t}
}

// ask sends join (or peers) and returns the suggested ids, skipping other
// messages.
func (c *sigClient) ask(typ signaling.Type, sw signaling.Swarm) []string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	slots := 4
	if err := c.Send(ctx, &signaling.Message{Type: typ, Swarm: &sw, Slots: &slots}); err != nil {
		c.t.Fatal(err)
	}
	for {
		m, err := c.Recv(ctx)
		if err != nil {
			c.t.Fatal(err)
		}
		if m.Type == signaling.TypePeers {
			return m.Peers
		}
		if m.Type == signaling.TypeError {
			c.t.Fatalf("%s: %s %s", typ, m.Code, m.Text)
		}
	}
}

// TestTwoNodeSwarm runs docker-compose.yml's topology as processes on
// loopback: Redis, two `peercdn serve --redis` nodes behind a load balancer,
// and a static CDN. Viewers spread over the nodes reach the offload they
// reach on one node, and relays cross nodes.
func TestTwoNodeSwarm(t *testing.T) {
	rs := redistest.Start(t)
	n1 := startServe(t, "--redis", rs.URL())
	n2 := startServe(t, "--redis", rs.URL())
	lb := httptest.NewServer(roundRobin(t, n1, n2))
	defer lb.Close()
	st, err := fs.Sub(examples.Stream, "stream")
	if err != nil {
		t.Fatal(err)
	}
	cdn := httptest.NewServer(http.StripPrefix("/stream/", http.FileServerFS(st)))
	defer cdn.Close()
	stream := cdn.URL + "/stream/master.m3u8"
	run := func(tracker string) sim.Summary {
		sum, err := sim.RunSwarm(context.Background(), sim.SwarmConfig{
			Trackers: []string{tracker}, Stream: stream, Viewers: 6,
			Duration: 20 * time.Second, JoinSpread: 3 * time.Second, Loopback: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	one := run(n1.ws())
	two := run("ws" + strings.TrimPrefix(lb.URL, "http") + "/ws")
	t.Logf("one node: offload %.3f stalls %d; two nodes behind the balancer: offload %.3f stalls %d",
		one.Offload, one.Stalls, two.Offload, two.Stalls)
	if one.Stalls+two.Stalls+one.Errors+two.Errors != 0 {
		t.Errorf("stalls %d/%d, errors %d/%d", one.Stalls, two.Stalls, one.Errors, two.Errors)
	}
	if two.Offload < 0.5 || two.Offload < one.Offload-0.10 {
		t.Errorf("two-node offload %.3f vs one node %.3f", two.Offload, one.Offload)
	}
	for i, n := range []*node{n1, n2} {
		if v := metric(t, n, "peercdn_tracker_cluster_published_total"); v == 0 {
			t.Errorf("node %d published nothing to the other: viewers did not meet across nodes", i+1)
		}
	}

	// Either node's cluster-wide figures (the dashboard's) are what every
	// viewer of both runs reported, each node's own only its viewers'.
	want := tracker.UsageStats{CDNBytes: one.CDNBytes + two.CDNBytes, P2PBytes: one.P2PBytes + two.P2PBytes,
		UploadBytes: one.UploadBytes + two.UploadBytes, StallMs: one.StallMs + two.StallMs}
	stats := func(n *node, query string) tracker.Stats {
		_, body := httpGet(t, n.http()+"/stats.json"+query)
		var st tracker.Stats
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	deadline := time.Now().Add(15 * time.Second) // the nodes share their figures every 5 s
	for _, n := range []*node{n1, n2} {
		for {
			got := stats(n, "?scope=cluster")
			bytes := got.Usage
			bytes.PeersConnected, bytes.PeersFailed = 0, 0 // peer connections: checked in sim.TestLiveSwarm
			if bytes == want && len(got.Nodes) == 2 && got.Usage.PeersConnected > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster view of %s: %d nodes, usage %+v, want %+v", n.addr, len(got.Nodes), got.Usage, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if own1, own2 := stats(n1, "").Usage, stats(n2, "").Usage; own1 == want || own1.P2PBytes+own2.P2PBytes != want.P2PBytes {
		t.Errorf("nodes' own figures %+v and %+v, viewers' %+v", own1, own2, want)
	}
}

// roundRobin is the load balancer of the compose file, in process: each new
// request (a WebSocket upgrade included) goes to the next node.
func roundRobin(t *testing.T, nodes ...*node) http.Handler {
	proxies := make([]*httputil.ReverseProxy, len(nodes))
	for i, n := range nodes {
		u, err := url.Parse(n.http())
		if err != nil {
			t.Fatal(err)
		}
		proxies[i] = httputil.NewSingleHostReverseProxy(u)
	}
	var next atomic.Uint64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxies[next.Add(1)%uint64(len(proxies))].ServeHTTP(w, r)
	})
}

// TestKilledNodeExpires: a node killed with SIGKILL says nothing; its
// viewers leave the other node's swarms within the member expiry.
func TestKilledNodeExpires(t *testing.T) {
	rs := redistest.Start(t)
	n1 := startServe(t, "--redis", rs.URL(), "--member-ttl", "3s")
	n2 := startServe(t, "--redis", rs.URL(), "--member-ttl", "3s")
	sw := signaling.Swarm{Content: "/killed.m3u8"}
	x := dialNode(t, n2)
	x.ask(signaling.TypeJoin, sw)
	y := dialNode(t, n1)
	if ps := y.ask(signaling.TypeJoin, sw); !slices.Contains(ps, x.PeerID()) {
		t.Fatalf("y on node 1 was offered %v, not x on node 2", ps)
	}
	n2.cmd.Process.Kill()
	killed := time.Now()
	for slices.Contains(y.ask(signaling.TypePeers, sw), x.PeerID()) {
		if time.Since(killed) > 10*time.Second {
			t.Fatal("the killed node's viewer is still suggested after 10 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	gone := time.Since(killed)
	t.Logf("killed node's viewer gone from the other node after %v (member_ttl 3s)", gone.Round(100*time.Millisecond))
	if gone > 4*time.Second {
		t.Errorf("gone after %v, want within member_ttl 3s (+1s)", gone)
	}
}

// TestRedisOutageUnderLoad: Redis stopped for 60 s while viewers play over
// two nodes: no node exits, viewers do not stall, each node keeps matching
// its own viewers and says it is degraded; cross-node matching is back
// within 30 s of Redis returning.
func TestRedisOutageUnderLoad(t *testing.T) {
	rs := redistest.Start(t)
	n1 := startServe(t, "--demo", "--redis", rs.URL())
	n2 := startServe(t, "--demo", "--redis", rs.URL())
	stream := n1.http() + "/demo/live/master.m3u8"
	const before, outage, after = 10 * time.Second, 60 * time.Second, 30 * time.Second
	done := make(chan sim.Summary, 1)
	go func() {
		sum, err := sim.RunSwarm(context.Background(), sim.SwarmConfig{
			Trackers: []string{n1.ws(), n2.ws()}, Stream: stream, Viewers: 6,
			Duration: before + outage + after, JoinSpread: 3 * time.Second, Loopback: true,
		})
		if err != nil {
			t.Error(err)
		}
		done <- sum
	}()
	time.Sleep(before)
	rs.Stop()
	stopped := time.Now()
	time.Sleep(3 * time.Second)
	for i, n := range []*node{n1, n2} {
		if code, body := httpGet(t, n.http()+"/healthz"); code != 200 {
			t.Errorf("node %d /healthz %d %q during the outage", i+1, code, body)
		}
		if code, body := httpGet(t, n.http()+"/readyz"); code != 200 || !strings.HasPrefix(body, "degraded") {
			t.Errorf("node %d /readyz %d %q during the outage", i+1, code, body)
		}
		if v := metric(t, n, "peercdn_tracker_cluster_up"); v != 0 {
			t.Errorf("node %d peercdn_tracker_cluster_up %v during the outage", i+1, v)
		}
	}
	// Local matching goes on.
	sw := signaling.Swarm{Content: "/outage.m3u8"}
	a := dialNode(t, n1)
	a.ask(signaling.TypeJoin, sw)
	a2 := dialNode(t, n1)
	if ps := a2.ask(signaling.TypeJoin, sw); !slices.Contains(ps, a.PeerID()) {
		t.Errorf("local matching during the outage: offered %v", ps)
	}
	b := dialNode(t, n2)
	if ps := b.ask(signaling.TypeJoin, sw); slices.Contains(ps, a.PeerID()) {
		t.Errorf("node 2 matched a node 1 viewer with Redis down: %v", ps)
	}
	time.Sleep(time.Until(stopped.Add(outage)))
	rs.Restart()
	back := time.Now()
	for !slices.Contains(b.ask(signaling.TypePeers, sw), a.PeerID()) {
		if time.Since(back) > 30*time.Second {
			t.Fatal("cross-node matching not back 30 s after Redis")
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("cross-node matching back %v after Redis returned", time.Since(back).Round(100*time.Millisecond))
	sum := <-done
	t.Logf("swarm over the outage: offload %.3f, stalls %d, errors %d", sum.Offload, sum.Stalls, sum.Errors)
	if sum.Stalls != 0 || sum.Errors != 0 {
		t.Errorf("viewers stalled %d times, %d errors", sum.Stalls, sum.Errors)
	}
	for i, n := range []*node{n1, n2} {
		if !n.alive() {
			t.Errorf("node %d exited", i+1)
		}
	}
}
