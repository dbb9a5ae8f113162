//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peercdn/peercdn/internal/netlab"
	"github.com/peercdn/peercdn/sim"
)

// TestNATLab runs native viewers (`peercdn swarm`, ICE on real interfaces)
// in households of a network lab, each behind its own NAT router, against
// `peercdn serve --demo` on the lab's internet:
//   - four homes (port-preserving NAT, stateful firewall) with the built-in
//     STUN: every viewer gets bytes from peers, swarm offload at least 0.6;
//   - the same with STUN off: no viewer can reach another (failed
//     connections, 0 P2P bytes), and still no stalls;
//   - two homes behind symmetric NATs, with the built-in TURN allowed: they
//     exchange segments through the relay, whose byte counter moves; without
//     TURN they play from the CDN.
func TestNATLab(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of viewers in a network lab")
	}
	bin := binary(t)
	lab := netlab.New(t)
	const seconds = 40
	for i, tc := range []struct {
		name     string
		nat      netlab.NAT
		homes    int
		args     []string
		offload  float64 // at least
		p2p      bool    // every viewer gets P2P bytes
		relayed  bool    // the built-in TURN carried bytes
		failures bool    // connections failed and nothing came from peers
	}{
		{name: "homes with STUN", nat: netlab.Home, homes: 4, offload: 0.6, p2p: true},
		{name: "homes without STUN", nat: netlab.Home, homes: 4, args: []string{"--stun-listen="}, failures: true},
		{name: "symmetric NATs with TURN", nat: netlab.Symmetric, homes: 2, offload: 0.3, p2p: true, relayed: true,
			args: []string{"--turn-listen", netlab.Internet + ":3578", "--allow-relay"}},
		{name: "symmetric NATs without TURN", nat: netlab.Symmetric, homes: 2, failures: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			port := 8080 + i
			addr := netlab.Internet + ":" + strconv.Itoa(port)
			args := append([]string{"serve", "--demo", "--listen", addr,
				"--stun-listen", netlab.Internet + ":" + strconv.Itoa(3478+i)}, tc.args...)
			serve := lab.Internet().Command(context.Background(), bin, args...)
			serve.Stderr = io.Discard
			if err := serve.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { serve.Process.Kill(); serve.Wait() })
			waitHealthy(t, lab.Internet(), addr)

			var mu sync.Mutex
			var sums []sim.Summary
			var wg sync.WaitGroup
			for h := range tc.homes {
				host := lab.Household(tc.nat, 1, 0)[0]
				wg.Add(1)
				go func() {
					defer wg.Done()
					time.Sleep(time.Duration(h) * time.Second)
					cmd := host.Command(context.Background(), bin, "swarm", "--tracker", "ws://"+addr+"/ws",
						"--viewers", "1", "--seconds", strconv.Itoa(seconds-h), "--loopback=false", "--json")
					out, err := cmd.Output()
					var s sim.Summary
					if err == nil {
						err = json.Unmarshal(out, &s)
					}
					if err != nil {
						t.Errorf("viewer in %s: %v\n%s", host.NS, err, out)
						return
					}
					mu.Lock()
					sums = append(sums, s)
					mu.Unlock()
				}()
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			var p2p, cdn, failed, connected int64
			stalls, with := 0, 0
			for _, s := range sums {
				p2p, cdn, stalls = p2p+s.P2PBytes, cdn+s.CDNBytes, stalls+s.Stalls
				failed, connected = failed+s.PeersFailed, connected+s.PeersConnected
				if s.P2PBytes > 0 {
					with++
				}
			}
			offload := float64(p2p) / float64(max(1, p2p+cdn))
			relayed := labMetric(t, lab.Internet(), addr, "peercdn_tracker_turn_relayed_bytes_total")
			t.Logf("%s: offload %.3f (p2p %d, cdn %d), %d of %d viewers got P2P bytes, peer connections %d opened %d failed, stalls %d, TURN relayed %.0f bytes",
				tc.name, offload, p2p, cdn, with, len(sums), connected, failed, stalls, relayed)
			if stalls != 0 || offload < tc.offload {
				// What each viewer's loads were, to tell a slow CDN
				// fetch from a wait for peers that cost the buffer, and
				// a connection that came late from transfers that ended
				// at the CDN.
				for _, s := range sums {
					t.Logf("viewer: %d stalls, %d ms; startup %d ms; loads p50 %d, p95 %d, max %d ms; sources %v; CDN because %v; startup %v; abandoned %d, wasted %d bytes",
						s.Stalls, s.StallMs, s.StartupMs, s.LoadMsP50, s.LoadMsP95, s.LoadMsMax, s.Sources, s.CDNWhy, s.StartupSources, s.Abandoned, s.WastedBytes)
				}
			}
			if stalls != 0 {
				t.Errorf("%d stalls", stalls)
			}
			if offload < tc.offload {
				t.Errorf("offload %.3f, want at least %.2f", offload, tc.offload)
			}
			if tc.p2p && with != len(sums) {
				t.Errorf("%d of %d viewers got bytes from peers", with, len(sums))
			}
			if tc.relayed && relayed < float64(p2p)/2 {
				t.Errorf("the relay carried %.0f bytes for %d P2P bytes", relayed, p2p)
			}
			if tc.failures && (p2p != 0 || failed == 0 || connected != 0) {
				t.Errorf("want failed connections and nothing from peers: %d P2P bytes, %d opened, %d failed", p2p, connected, failed)
			}
		})
	}
}

// waitHealthy waits for a tracker in the lab to answer /healthz.
func waitHealthy(t *testing.T, from *netlab.Host, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if body, err := labGet(from, addr, "/healthz"); err == nil && body != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve on %s did not come up", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// labMetric reads one counter from a lab tracker's /metrics (0 if absent).
func labMetric(t *testing.T, from *netlab.Host, addr, name string) float64 {
	body, err := labGet(from, addr, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return 0
}

// labGet fetches path from a tracker in the lab, over a connection made in
// the lab's namespace.
func labGet(from *netlab.Host, addr, path string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) { return from.Dial(network, a) },
	}}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s", resp.Status)
	}
	return string(b), err
}

// TestNATLabMixed is a larger swarm for benchmarks (make bench-lab): native
// viewers in LAB_HOMES port-preserving homes and LAB_SYMMETRIC symmetric
// ones (default 16 and 6), one each, joining 1 s apart, 60 s, with the
// built-in STUN, and the built-in TURN if LAB_TURN=1. It reports offload,
// stalls and connections; it asserts only that nobody stalled.
func TestNATLabMixed(t *testing.T) {
	if os.Getenv("LAB_MIXED") == "" {
		t.Skip("a benchmark: make bench-lab (LAB_MIXED=1)")
	}
	homes, symmetric := envInt("LAB_HOMES", 16), envInt("LAB_SYMMETRIC", 6)
	bin := binary(t)
	lab := netlab.New(t)
	addr := netlab.Internet + ":8080"
	args := []string{"serve", "--demo", "--listen", addr, "--stun-listen", netlab.Internet + ":3478"}
	if os.Getenv("LAB_TURN") == "1" {
		args = append(args, "--turn-listen", netlab.Internet+":3578", "--allow-relay")
	}
	serve := lab.Internet().Command(context.Background(), bin, args...)
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { serve.Process.Kill(); serve.Wait() })
	waitHealthy(t, lab.Internet(), addr)
	const seconds = 60
	type result struct {
		nat netlab.NAT
		sum sim.Summary
	}
	var mu sync.Mutex
	var results []result
	var wg sync.WaitGroup
	n := homes + symmetric
	for i := range n {
		nat := netlab.Home
		if i%(n/max(1, symmetric)+1) == 1 && symmetric > 0 {
			nat = netlab.Symmetric
			symmetric--
		}
		host := lab.Household(nat, 1, 0)[0]
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * time.Second)
			out, err := host.Command(context.Background(), bin, "swarm", "--tracker", "ws://"+addr+"/ws",
				"--viewers", "1", "--seconds", strconv.Itoa(seconds), "--loopback=false", "--json").Output()
			var s sim.Summary
			if err == nil {
				err = json.Unmarshal(out, &s)
			}
			if err != nil {
				t.Errorf("viewer in %s: %v", host.NS, err)
				return
			}
			mu.Lock()
			results = append(results, result{nat, s})
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, nat := range []netlab.NAT{netlab.Home, netlab.Symmetric} {
		var p2p, cdn, ok, failed int64
		stalls, viewers := 0, 0
		for _, r := range results {
			if r.nat == nat {
				viewers++
				p2p, cdn, stalls = p2p+r.sum.P2PBytes, cdn+r.sum.CDNBytes, stalls+r.sum.Stalls
				ok, failed = ok+r.sum.PeersConnected, failed+r.sum.PeersFailed
			}
		}
		t.Logf("%d %s viewers: offload %.3f (p2p %d, cdn %d), connections %d opened %d failed, stalls %d",
			viewers, nat, float64(p2p)/float64(max(1, p2p+cdn)), p2p, cdn, ok, failed, stalls)
		if stalls > 0 {
			t.Errorf("%d stalls", stalls)
		}
	}
	var p2p, cdn int64
	for _, r := range results {
		p2p, cdn = p2p+r.sum.P2PBytes, cdn+r.sum.CDNBytes
	}
	t.Logf("swarm of %d: offload %.3f; TURN relayed %.0f bytes", len(results), float64(p2p)/float64(max(1, p2p+cdn)),
		labMetric(t, lab.Internet(), addr, "peercdn_tracker_turn_relayed_bytes_total"))
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
