//go:build e2e && linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/peercdn/peercdn/internal/netlab"
)

// TestChromiumBehindNATs plays the live demo in real Chromium as real
// viewers run it: each browser process in its own host of a network lab,
// with no camera or microphone permission (its host addresses hidden behind
// mDNS names) and without the loopback flag, against `peercdn serve --demo`
// on the lab's internet with its defaults (the built-in STUN):
//   - four homes, each behind its own port-preserving NAT with a stateful
//     firewall: every viewer gets bytes from peers through the STUN
//     server's reflexive addresses, offload at least 0.6, 0 stalls; with
//     STUN off, nothing from peers, failures counted, 0 stalls;
//   - an office, four viewers on one LAN behind one NAT, no ICE servers at
//     all: they connect to each other directly (mDNS host candidates),
//     offload at least 0.6, and the dashboard's stats show one network.
func TestChromiumBehindNATs(t *testing.T) {
	lab := netlab.New(t)
	for i, tc := range []struct {
		name      string
		office    bool
		symmetric bool // two homes behind symmetric NATs
		args      []string
		offload   float64
		noP2P     bool
	}{
		{name: "four homes with the built-in STUN", offload: 0.6},
		{name: "four homes without STUN", args: []string{"--stun-listen="}, noP2P: true},
		{name: "an office", office: true, args: []string{"--stun-listen="}, offload: 0.6},
		{name: "symmetric NATs through the built-in TURN", symmetric: true, offload: 0.3,
			args: []string{"--turn-listen", netlab.Internet + ":3578", "--allow-relay"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := netlab.Internet + ":" + strconv.Itoa(8080+i)
			args := append([]string{"serve", "--demo", "--listen", addr, "--vendor-dir", filepath.Join(root, "web", "vendor"),
				"--stun-listen", netlab.Internet + ":" + strconv.Itoa(3478+i)}, tc.args...)
			srv := lab.Internet().Command(context.Background(), binary, args...)
			srv.Stderr = &prefixWriter{t: t, prefix: "serve"}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
			client := labClient(lab.Internet())
			waitUp(t, client, addr)

			var hosts []*netlab.Host
			switch {
			case tc.office:
				hosts = lab.Household(netlab.Home, 4, 0)
			case tc.symmetric:
				for range 2 {
					hosts = append(hosts, lab.Household(netlab.Symmetric, 1, 0)[0])
				}
			default:
				for range 4 {
					hosts = append(hosts, lab.Household(netlab.Home, 1, 0)[0])
				}
			}
			var views []context.Context
			for j, h := range hosts {
				views = append(views, labViewer(t, h, "http://"+addr+"/"))
				if j < len(hosts)-1 {
					time.Sleep(time.Second)
				}
			}
			const window = 45 * time.Second
			time.Sleep(5 * time.Second)
			var first, last []sample
			for _, v := range views {
				first = append(first, read(t, v))
			}
			time.Sleep(window)
			var line []string
			for j, v := range views {
				s := read(t, v)
				last = append(last, s)
				line = append(line, fmt.Sprintf("v%d t=%.0f p2p=%d cdn=%d peers=%d stalls=%d %s", j, s.Time, s.Stats.P2PBytes, s.Stats.CDNBytes, s.Stats.Peers, s.QA.Stalls, s.Stats.Error))
			}
			t.Logf("after %v:\n  %s", window, strings.Join(line, "\n  "))
			want := swarmWant{minWithP2P: len(views), minOffload: tc.offload}
			if tc.noP2P {
				want = swarmWant{}
			}
			_, withP2P := checkSwarm(t, first, last, window, want)
			st := labStats(t, client, addr)
			t.Logf("tracker: peer connections %d opened, %d failed; %d networks", st.Usage.PeersConnected, st.Usage.PeersFailed, st.networks())
			if tc.noP2P {
				if withP2P != 0 || st.Usage.PeersFailed == 0 {
					t.Errorf("without STUN: %d viewers got P2P bytes, %d failed connections reported; want 0 and some", withP2P, st.Usage.PeersFailed)
				}
				return
			}
			if want := 1; tc.office && st.networks() != want {
				t.Errorf("the office's viewers are in %d networks, want %d", st.networks(), want)
			}
			if tc.symmetric {
				relayed := labMetric(t, client, addr, "peercdn_tracker_turn_relayed_bytes_total")
				var p2p int64
				for _, s := range last {
					p2p += s.Stats.P2PBytes
				}
				t.Logf("the built-in TURN relayed %.0f bytes; the viewers got %d from peers", relayed, p2p)
				if relayed < float64(p2p) {
					t.Errorf("the relay carried %.0f bytes for %d P2P bytes", relayed, p2p)
				}
			}
		})
	}
}

// labViewer starts a Chromium of its own in h's namespace (the browser
// process itself, not only its traffic) and opens url in it, with no
// permissions granted: as a real viewer's browser.
func labViewer(t *testing.T, h *netlab.Host, url string) context.Context {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.NoFirstRun,
		chromedp.Headless,
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.UserDataDir(t.TempDir()),
		// The DevTools pipe (descriptors 3 and 4) passes through ip netns
		// exec to the browser.
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			ip, _ := exec.LookPath("ip")
			cmd.Args = append([]string{"ip", "netns", "exec", h.NS, cmd.Path}, cmd.Args[1:]...)
			cmd.Path = ip
		}),
	}
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(alloc)
	t.Cleanup(cancel2)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("true")); err != nil {
		t.Fatalf("starting chromium in %s: %v", h.NS, err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: stallProbe}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// labClient makes HTTP requests from inside the lab's host h.
func labClient(h *netlab.Host) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(_ context.Context, network, addr string) (net.Conn, error) { return h.Dial(network, addr) },
	}}
}

func waitUp(t *testing.T, c *http.Client, addr string) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := c.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve on %s did not come up: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// labMetric reads one counter from the tracker's /metrics (0 if absent).
func labMetric(t *testing.T, c *http.Client, addr, name string) float64 {
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return 0
}

type labStatsJSON struct {
	Usage      usage `json:"usage"`
	SwarmStats []struct {
		Peers    int `json:"peers"`
		Networks int `json:"networks"`
	} `json:"swarm_stats"`
}

// networks is the most network groups one swarm's viewers are in.
func (s labStatsJSON) networks() int {
	n := 0
	for _, r := range s.SwarmStats {
		n = max(n, r.Networks)
	}
	return n
}

func labStats(t *testing.T, c *http.Client, addr string) labStatsJSON {
	resp, err := c.Get("http://" + addr + "/stats.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var s labStatsJSON
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("stats.json: %v\n%s", err, b)
	}
	return s
}
