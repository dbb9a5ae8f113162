package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker"
)

// setRollout PUTs p2p_percent to the tracker's admin API.
func setRollout(t *testing.T, trackerWS, token string, percent int) {
	t.Helper()
	u := trackerHTTP(trackerWS) + "/admin/rollout"
	r, _ := http.NewRequest(http.MethodPut, u, strings.NewReader(fmt.Sprintf(`{"p2p_percent":%d}`, percent)))
	r.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /admin/rollout: %s", resp.Status)
	}
}

// cohorts reads each cohort's figures from the tracker's /stats.json.
func cohorts(t *testing.T, trackerWS string) map[string]tracker.CohortStats {
	t.Helper()
	out := map[string]tracker.CohortStats{}
	for _, c := range trackerStats(t, trackerWS).Rollout.Cohorts {
		out[c.Cohort] = c
	}
	return out
}

// fromPeer: r's bytes came from a peer, all or some (a slow transfer is
// completed from the CDN, which a loaded machine with the race detector
// sees now and then).
func fromPeer(r Result) bool { return r.Source == SourceP2P || r.Source == SourceMixed }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKillSwitch: the operator turns P2P off while two viewers share
// segments. Both drop their peers and load from the CDN only (each fetches
// the segment itself), keep reporting usage, now as the control cohort;
// turned on again, they find each other and share again.
func TestKillSwitch(t *testing.T) {
	const token = "admin-secret"
	o := startOrigin(t)
	tr := startTrackerWith(t, func(c *tracker.Config) {
		c.AdminToken = token
		c.IdleTimeout = 1500 * time.Millisecond // usage reports every 500 ms
	})
	a, b := startAgent(t, tr, nil), startAgent(t, tr, nil)
	waitPeers(t, 1, a, b)
	ctx := context.Background()
	if _, err := a.Load(ctx, req(o, 1, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitHolds(t, b, req(o, 1, 0))
	if r, err := b.Load(ctx, req(o, 1, 10*time.Second)); err != nil || !fromPeer(r) {
		t.Fatalf("with P2P on: %s, %v; want the peer's copy", r.Source, err)
	}
	waitFor(t, "the p2p cohort's usage reports", func() bool {
		u := cohorts(t, tr)["p2p"].Usage
		return u.CDNBytes+u.P2PBytes == 2*segSize && u.P2PBytes > 0
	})

	setRollout(t, tr, token, 0)
	waitFor(t, "both viewers in the control cohort, without peers", func() bool {
		sa, sb := a.Stats(), b.Stats()
		return sa.Control && sb.Control && sa.Peers == 0 && sb.Peers == 0
	})
	before := o.sent.Load()
	for _, v := range []*Agent{a, b} {
		r, err := v.Load(ctx, req(o, 2, 5*time.Second))
		if err != nil || r.Source != SourceCDN {
			t.Fatalf("with P2P off: %s, %v; want the CDN", r.Source, err)
		}
	}
	if got := o.sent.Load() - before; got != 2*segSize {
		t.Fatalf("the CDN sent %d bytes for two viewers of one segment, want %d: nothing shared with P2P off", got, 2*segSize)
	}
	waitFor(t, "the control cohort's usage reports", func() bool {
		c := cohorts(t, tr)["control"]
		return c.Viewers == 2 && c.Usage.CDNBytes == 2*segSize && c.Usage.P2PBytes == 0 && c.WatchMs > 0
	})
	if p := cohorts(t, tr)["p2p"]; p.Viewers != 0 || p.Usage.P2PBytes == 0 || p.Usage.CDNBytes+p.Usage.P2PBytes != 2*segSize {
		t.Fatalf("p2p cohort %+v: want no viewers now, and the one segment fetched and shared before", p)
	}
	setRollout(t, tr, token, 100)
	waitFor(t, "both viewers back on P2P", func() bool { return !a.Stats().Control && !b.Stats().Control })
	waitPeers(t, 1, a, b)
	if _, err := a.Load(ctx, req(o, 3, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitHolds(t, b, req(o, 3, 0))
	if r, err := b.Load(ctx, req(o, 3, 10*time.Second)); err != nil || !fromPeer(r) {
		t.Fatalf("with P2P on again: %s, %v; want the peer's copy", r.Source, err)
	}
}

// The agent names one session for its lifetime in the tracker URL, so the
// tracker keeps its rollout cohort over reconnects.
func TestAgentNamesItsSession(t *testing.T) {
	for _, base := range []string{"ws://127.0.0.1:1/ws", "ws://127.0.0.1:1/ws?x=1"} {
		a, err := New(DefaultConfig(base))
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(a.trackerURL)
		if err != nil {
			t.Fatal(err)
		}
		if s := u.Query().Get(signaling.SessionParam); !signaling.ValidSession(s) || !strings.HasPrefix(a.trackerURL, base) {
			t.Fatalf("%s became %s: want it with a valid session", base, a.trackerURL)
		}
		if b, _ := New(DefaultConfig(base)); b.trackerURL == a.trackerURL {
			t.Fatal("two agents named the same session")
		}
	}
}
