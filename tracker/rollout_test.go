package tracker

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/cluster"
)

// The hash puts the asked share of viewers on P2P, and moving the rollout
// only moves viewers one way: raising it never takes anyone off P2P.
func TestInRollout(t *testing.T) {
	const n = 20000
	ids := make([]string, n)
	node := cluster.NewNodeID()
	for i := range ids {
		ids[i] = node + crand.Text() // as hello makes them
	}
	for _, percent := range []int{0, 1, 10, 50, 90, 100} {
		in := 0
		for _, id := range ids {
			if inRollout(id, percent) {
				in++
				if !inRollout(id, min(100, percent+7)) {
					t.Fatalf("%s is in at %d%% but out at %d%%", id, percent, percent+7)
				}
			}
		}
		// Binomial: 4 standard deviations of n*p*(1-p) at most 0.71% of n.
		if got := float64(in) * 100 / n; got < float64(percent)-1.5 || got > float64(percent)+1.5 {
			t.Errorf("p2p_percent %d put %.1f%% of viewers on P2P", percent, got)
		}
	}
}

func adminRequest(t *testing.T, n *testNode, method, token, body string) (int, map[string]any) {
	t.Helper()
	r, err := http.NewRequest(method, n.hs.URL+"/admin/rollout", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s /admin/rollout answered %s %q: not JSON", method, resp.Status, b)
	}
	return resp.StatusCode, out
}

func TestAdminRolloutChecksItsCaller(t *testing.T) {
	off := startNode(t, nil)
	if code, body := adminRequest(t, off, http.MethodPut, "x", `{"p2p_percent":0}`); code != http.StatusNotFound || body["error"] != "admin_off" {
		t.Fatalf("without admin_token: %d %v, want 404 admin_off", code, body)
	}
	n := startNode(t, func(c *Config) { c.AdminToken = "s3cret" })
	for _, tc := range []struct {
		token, body string
		code        int
		err         string
	}{
		{"", `{"p2p_percent":0}`, http.StatusUnauthorized, "unauthorized"},
		{"s3cre", `{"p2p_percent":0}`, http.StatusUnauthorized, "unauthorized"},
		{"s3cret", `{"p2p_percent":101}`, http.StatusBadRequest, "bad_request"},
		{"s3cret", `{"p2p_percent":-1}`, http.StatusBadRequest, "bad_request"},
		{"s3cret", `{"p2p_percent":"0"}`, http.StatusBadRequest, "bad_request"},
		{"s3cret", `{}`, http.StatusBadRequest, "bad_request"},
		{"s3cret", `{"p2p_percent":0,"other":1}`, http.StatusBadRequest, "bad_request"},
		{"s3cret", `{"p2p_percent":0` + strings.Repeat(" ", maxAdminBody) + `}`, http.StatusBadRequest, "bad_request"},
	} {
		if code, body := adminRequest(t, n, http.MethodPut, tc.token, tc.body); code != tc.code || body["error"] != tc.err {
			t.Errorf("PUT %.40q with token %q: %d %v, want %d %s", tc.body, tc.token, code, body, tc.code, tc.err)
		}
	}
	if got := n.srv.rollout.Load().P2PPercent; got != 100 {
		t.Fatalf("refused requests changed the rollout to %d", got)
	}
	if code, body := adminRequest(t, n, http.MethodPut, "s3cret", `{"p2p_percent":25}`); code != http.StatusOK || body["p2p_percent"] != 25.0 {
		t.Fatalf("PUT 25: %d %v", code, body)
	}
	if code, body := adminRequest(t, n, http.MethodGet, "s3cret", ""); code != http.StatusOK || body["p2p_percent"] != 25.0 {
		t.Fatalf("GET after PUT 25: %d %v", code, body)
	}
	if code, _ := adminRequest(t, n, http.MethodGet, "", ""); code != http.StatusUnauthorized {
		t.Fatalf("GET without the token: %d, want 401", code)
	}
	// Guessing: after a burst of wrong tokens, 429, while the right one
	// still gets in.
	limited := 0
	for i := range 30 {
		code, body := adminRequest(t, n, http.MethodGet, fmt.Sprint("guess", i), "")
		if code == http.StatusTooManyRequests && body["error"] == "rate_limited" {
			limited++
		}
	}
	if limited < 15 {
		t.Fatalf("%d of 30 wrong tokens in a row refused as rate_limited, want most", limited)
	}
	if code, _ := adminRequest(t, n, http.MethodGet, "s3cret", ""); code != http.StatusOK {
		t.Fatalf("the right token while guesses are limited: %d", code)
	}
}

// A viewer outside the rollout is welcomed with p2p false and cannot join
// a swarm; one inside joins as always, and its welcome says nothing (what
// agents that predate the rollout expect).
func TestRolloutSplitsViewers(t *testing.T) {
	n := startNode(t, func(c *Config) { c.P2PPercent = 50 })
	seen := [numCohorts]int{}
	for range 40 {
		c := n.dial(t, "")
		control := !inRollout(c.PeerID(), 50)
		seen[cohortOf(control)]++
		switch w := c.Welcome().P2P; {
		case control && (w == nil || *w):
			t.Fatalf("viewer out of the rollout welcomed with p2p %v", w)
		case !control && w != nil:
			t.Fatalf("viewer in the rollout welcomed with p2p %v, want it left out", *w)
		}
		m := join(t, c, live, "")
		switch {
		case control && (m.Type != signaling.TypeError || m.Code != signaling.CodeP2POff):
			t.Fatalf("join from the control cohort: %s %s, want error p2p_off", m.Type, m.Code)
		case !control && m.Type != signaling.TypePeers:
			t.Fatalf("join from the p2p cohort: %s %s (%s)", m.Type, m.Code, m.Text)
		}
	}
	if seen[cohortP2P] == 0 || seen[cohortControl] == 0 {
		t.Fatalf("40 viewers at 50%%: %v in the cohorts", seen)
	}
	st := n.srv.localStats(10)
	if st.Members != seen[cohortP2P] {
		t.Fatalf("%d swarm members, want the %d viewers of the p2p cohort", st.Members, seen[cohortP2P])
	}
	for i, c := range st.Rollout.Cohorts {
		if c.Cohort != cohortNames[i] || c.Viewers != seen[i] {
			t.Fatalf("cohort %d in /stats.json: %+v, want %s with %d viewers", i, c, cohortNames[i], seen[i])
		}
	}
}

// The kill switch: P2P off takes every viewer out of its swarms at once and
// tells it; on again, they are told and may join. Usage reports count for
// the cohort the viewer is in when it reports.
func TestKillSwitchMovesConnectedViewers(t *testing.T) {
	n := startNode(t, func(c *Config) { c.AdminToken = "k" })
	a, b := n.dial(t, ""), n.dial(t, "")
	join(t, a, live, "")
	join(t, b, live, "")
	time.Sleep(20 * time.Millisecond) // viewing time for the report to cover
	send(t, a, &signaling.Message{Type: signaling.TypePing, Ref: "1", Usage: &signaling.Usage{P2PBytes: 1000}})
	expect(t, a, signaling.TypePong, "")

	if code, _ := adminRequest(t, n, http.MethodPut, "k", `{"p2p_percent":0}`); code != http.StatusOK {
		t.Fatalf("PUT 0: %d", code)
	}
	for _, c := range []*client{a, b} {
		if m := expect(t, c, signaling.TypePolicy, ""); m.P2P == nil || *m.P2P {
			t.Fatalf("policy %+v, want p2p false", m)
		}
	}
	if st := n.srv.localStats(10); st.Members != 0 || st.Swarms != 0 {
		t.Fatalf("with P2P off, %d members in %d swarms remain", st.Members, st.Swarms)
	}
	if m := join(t, a, live, ""); m.Code != signaling.CodeP2POff {
		t.Fatalf("join with P2P off: %s %s", m.Type, m.Code)
	}
	// The first report after the switch carries what the viewer got
	// before it (its agent sends one at once): the p2p cohort's. The next
	// is the control cohort's.
	time.Sleep(20 * time.Millisecond)
	send(t, a, &signaling.Message{Type: signaling.TypePing, Ref: "2", Usage: &signaling.Usage{P2PBytes: 300}})
	expect(t, a, signaling.TypePong, "")
	time.Sleep(20 * time.Millisecond)
	send(t, a, &signaling.Message{Type: signaling.TypePing, Ref: "3", Usage: &signaling.Usage{CDNBytes: 700, StallMs: 40}})
	expect(t, a, signaling.TypePong, "")
	// A viewer welcomed now is in the control cohort from the start.
	c := n.dial(t, "")
	if w := c.Welcome().P2P; w == nil || *w {
		t.Fatalf("welcome with P2P off: p2p %v", w)
	}
	st := n.srv.localStats(10).Rollout
	if st.P2PPercent != 0 {
		t.Fatalf("p2p_percent %d in /stats.json", st.P2PPercent)
	}
	p, ctl := st.Cohorts[cohortP2P], st.Cohorts[cohortControl]
	if p.Viewers != 0 || p.Usage.P2PBytes != 1300 || ctl.Viewers != 3 || ctl.Usage.P2PBytes != 0 || ctl.Usage.CDNBytes != 700 || ctl.Usage.StallMs != 40 {
		t.Fatalf("cohorts %+v %+v: want the 1300 P2P bytes under p2p, the 700 CDN bytes and 40 ms under control, 3 control viewers", p, ctl)
	}
	if p.WatchMs <= 0 || ctl.WatchMs <= 0 {
		t.Fatalf("watch time p2p %d ms, control %d ms: each report covers some", p.WatchMs, ctl.WatchMs)
	}
	metrics := scrape(t, n)
	for _, want := range []string{
		`peercdn_rollout_p2p_percent 0`,
		`peercdn_cohort_bytes_total{cohort="control",source="cdn"} 700`,
		`peercdn_cohort_bytes_total{cohort="p2p",source="p2p"} 1300`,
		`peercdn_cohort_stall_seconds_total{cohort="control"} 0.04`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	if code, _ := adminRequest(t, n, http.MethodPut, "k", `{"p2p_percent":100}`); code != http.StatusOK {
		t.Fatalf("PUT 100: %d", code)
	}
	for _, c := range []*client{a, b, c} {
		if m := expect(t, c, signaling.TypePolicy, ""); m.P2P == nil || !*m.P2P {
			t.Fatalf("policy %+v, want p2p true", m)
		}
	}
	if m := join(t, a, live, ""); m.Type != signaling.TypePeers {
		t.Fatalf("join with P2P on again: %s %s", m.Type, m.Code)
	}
	if m := join(t, b, live, ""); m.Type != signaling.TypePeers || len(m.Peers) != 1 || m.Peers[0] != a.PeerID() {
		t.Fatalf("b's join: %s %v, want a suggested", m.Type, m.Peers)
	}
}

// A rollout set on one node reaches the viewers of every node, and a node
// that starts later follows it too.
func TestRolloutFollowsTheCluster(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			admin := func(c *Config) { c.AdminToken = "k" }
			n1, n2 := startClustered(t, st, admin), startClustered(t, st, admin)
			b := n2.dial(t, "")
			join(t, b, live, "")
			t.Cleanup(func() { adminRequest(t, n1, http.MethodPut, "k", `{"p2p_percent":100}`) }) // the store outlives the test
			start := time.Now()
			if code, _ := adminRequest(t, n1, http.MethodPut, "k", `{"p2p_percent":0}`); code != http.StatusOK {
				t.Fatalf("PUT 0 on node 1: %d", code)
			}
			if m := expect(t, b, signaling.TypePolicy, ""); m.P2P == nil || *m.P2P {
				t.Fatalf("node 2's viewer got %+v, want p2p false", m)
			}
			t.Logf("node 2 followed in %v", time.Since(start).Round(time.Millisecond))
			if m := join(t, b, live, ""); m.Code != signaling.CodeP2POff {
				t.Fatalf("join on node 2 with P2P off: %s %s", m.Type, m.Code)
			}
			n3 := startClustered(t, st, admin)
			eventually(t, 5*time.Second, "node 3 following the stored rollout", func() bool { return n3.srv.rollout.Load().P2PPercent == 0 })
			if w := n3.dial(t, "").Welcome().P2P; w == nil || *w {
				t.Fatalf("welcome on a node started after the kill switch: p2p %v", w)
			}
			if code, body := adminRequest(t, n3, http.MethodGet, "k", ""); code != http.StatusOK || body["p2p_percent"] != 0.0 {
				t.Fatalf("GET on node 3: %d %v", code, body)
			}
			// One site's share set on another node: every node has both
			// changes (each change starts from the stored rollout).
			if code, _ := adminRequest(t, n2, http.MethodPut, "k", `{"origin":"https://a.example","p2p_percent":30}`); code != http.StatusOK {
				t.Fatalf("PUT for an origin on node 2: %d", code)
			}
			for i, n := range []*testNode{n1, n2, n3} {
				eventually(t, 5*time.Second, fmt.Sprint("node ", i+1, " following"), func() bool {
					ro := n.srv.rollout.Load()
					return ro.P2PPercent == 0 && ro.Origins["https://a.example"] == 30
				})
			}
		})
	}
}

// scrape returns the node's /metrics text.
func scrape(t *testing.T, n *testNode) string {
	t.Helper()
	r, err := http.Get(n.hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A viewer keeps its cohort over reconnects when its agent names its
// session in the URL: a node draining (every deploy) does not reshuffle
// the rollout's cohorts. A session that is not valid is ignored.
func TestRolloutKeepsASessionsCohort(t *testing.T) {
	n := startNode(t, func(c *Config) { c.P2PPercent = 50; c.MaxConnsPerIP = 1000 })
	welcome := func(session string) bool {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := signaling.Dial(ctx, n.url+"?"+signaling.SessionParam+"="+session, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		p2p := c.Welcome().P2P
		return p2p == nil || *p2p
	}
	seen := map[bool]int{}
	for range 30 {
		s := crand.Text()
		first := welcome(s)
		seen[first]++
		if first != inRollout("s:"+s, 50) {
			t.Fatalf("session %s: welcomed with p2p %v, the rollout says %v", s, first, !first)
		}
		for range 3 {
			if welcome(s) != first {
				t.Fatalf("session %s changed cohort on reconnecting", s)
			}
		}
	}
	if seen[true] == 0 || seen[false] == 0 {
		t.Fatalf("30 sessions at 50%%: %v", seen)
	}
	// Not a session (too short, or not [A-Za-z0-9_-]): the peer id decides,
	// so the same string lands in both cohorts over enough connections.
	for _, bad := range []string{"short", "has%20space-in-it-xxxxxxxx", strings.Repeat("a", signaling.MaxSessionLen+1)} {
		got := map[bool]int{}
		for range 40 {
			got[welcome(bad)]++
		}
		if got[true] == 0 || got[false] == 0 {
			t.Errorf("invalid session %.20q decided the cohort: %v", bad, got)
		}
	}
}

// One site's rollout apart from the others': its viewers alone are moved.
func TestRolloutPerOrigin(t *testing.T) {
	n := startNode(t, func(c *Config) { c.AdminToken = "k" })
	a, b := n.dial(t, "https://a.example"), n.dial(t, "https://b.example")
	join(t, a, live, "")
	join(t, b, live, "")
	if code, body := adminRequest(t, n, http.MethodPut, "k", `{"origin":"HTTPS://A.example/","p2p_percent":0}`); code != http.StatusOK {
		t.Fatalf("PUT for one origin: %d %v", code, body)
	}
	if m := expect(t, a, signaling.TypePolicy, ""); *m.P2P {
		t.Fatal("a.example's viewer told p2p true")
	}
	expectNothing(t, b, 200*time.Millisecond)
	if m := join(t, a, live, ""); m.Code != signaling.CodeP2POff {
		t.Fatalf("join on a.example: %s %s, want p2p_off", m.Type, m.Code)
	}
	if m := join(t, b, live, ""); m.Type != signaling.TypePeers {
		t.Fatalf("join on b.example: %s %s", m.Type, m.Code)
	}
	if w := n.dial(t, "https://a.example").Welcome().P2P; w == nil || *w {
		t.Fatalf("a new viewer on a.example welcomed with p2p %v", w)
	}
	code, body := adminRequest(t, n, http.MethodGet, "k", "")
	if code != http.StatusOK || body["p2p_percent"] != 100.0 || fmt.Sprint(body["origins"]) != "map[https://a.example:0]" {
		t.Fatalf("GET: %d %v", code, body)
	}
	if st := n.srv.localStats(1).Rollout; st.Origins["https://a.example"] != 0 || len(st.Origins) != 1 {
		t.Fatalf("/stats.json rollout %+v", st)
	}
	// The site's own cohort figures: what its viewers reported since it
	// was set apart (the first report after the switch for the cohort it
	// left), none of b.example's.
	time.Sleep(20 * time.Millisecond)
	send(t, a, &signaling.Message{Type: signaling.TypePing, Ref: "1", Usage: &signaling.Usage{P2PBytes: 100}})
	expect(t, a, signaling.TypePong, "")
	time.Sleep(20 * time.Millisecond)
	send(t, a, &signaling.Message{Type: signaling.TypePing, Ref: "2", Usage: &signaling.Usage{CDNBytes: 500}})
	expect(t, a, signaling.TypePong, "")
	send(t, b, &signaling.Message{Type: signaling.TypePing, Ref: "3", Usage: &signaling.Usage{CDNBytes: 7}})
	expect(t, b, signaling.TypePong, "")
	sites := n.srv.localStats(1).Rollout.OriginCohorts
	if len(sites) != 2 || sites[0].Origin != "https://a.example" || sites[0].Cohort != "p2p" || sites[1].Cohort != "control" ||
		sites[0].Usage.P2PBytes != 100 || sites[0].Viewers != 0 || sites[1].Usage.CDNBytes != 500 || sites[1].Viewers != 2 || sites[1].WatchMs <= 0 {
		t.Fatalf("sites %+v: want a.example's p2p cohort with the 100 P2P bytes, its control cohort with 2 viewers and the 500 CDN bytes", sites)
	}
	for _, bad := range []struct{ method, body string }{
		{http.MethodPut, `{"origin":"a.example","p2p_percent":0}`},
		{http.MethodPut, `{"origin":"https://a.example"}`},
		{http.MethodDelete, ""},
	} {
		if code, body := adminRequest(t, n, bad.method, "k", bad.body); code != http.StatusBadRequest {
			t.Errorf("%s %s: %d %v, want 400", bad.method, bad.body, code, body)
		}
	}
	r, _ := http.NewRequest(http.MethodDelete, n.hs.URL+"/admin/rollout?origin=https://a.example", nil)
	r.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(r)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %v %v", resp, err)
	}
	resp.Body.Close()
	if m := expect(t, a, signaling.TypePolicy, ""); !*m.P2P {
		t.Fatal("a.example back to every site's share: told p2p false")
	}
	if o := n.srv.rollout.Load().Origins; len(o) != 0 {
		t.Fatalf("after DELETE: origins %v", o)
	}
}

// A store restarted empty loses the rollout; the nodes that followed it
// store it again, and a node started since, on its configuration, follows
// it rather than undoing a kill switch.
func TestRolloutSurvivesTheStoreLosingIt(t *testing.T) {
	for _, st := range stores(t) {
		if st.down == nil {
			continue
		}
		t.Run(st.name, func(t *testing.T) {
			admin := func(c *Config) { c.AdminToken = "k" }
			n1, n2 := startClustered(t, st, admin), startClustered(t, st, admin)
			if code, _ := adminRequest(t, n1, http.MethodPut, "k", `{"p2p_percent":0}`); code != http.StatusOK {
				t.Fatalf("PUT 0: %d", code)
			}
			t.Cleanup(func() { adminRequest(t, n1, http.MethodPut, "k", `{"p2p_percent":100}`) })
			eventually(t, 5*time.Second, "node 2 following", func() bool { return n2.srv.rollout.Load().P2PPercent == 0 })
			st.down()
			eventually(t, 5*time.Second, "node 1 sees the outage", func() bool { return !n1.srv.cluster.Up() })
			st.up() // empty
			eventually(t, 30*time.Second, "the rollout stored again", func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				ro, err := n1.srv.storedRollout(ctx)
				return err == nil && ro != nil && ro.P2PPercent == 0
			})
			n3 := startClustered(t, st, admin)
			eventually(t, 5*time.Second, "node 3 following the kill switch", func() bool { return n3.srv.rollout.Load().P2PPercent == 0 })
			if w := n3.dial(t, "").Welcome().P2P; w == nil || *w {
				t.Fatalf("welcome on node 3: p2p %v", w)
			}
		})
	}
}

// A cluster view sums each origin's cohorts over the nodes, for the origins
// the answering node has set apart, whether a node wrote them as
// origin_cohorts or, in an earlier release, as sites.
func TestMergeSiteCohorts(t *testing.T) {
	node := func(name string, viewers int, cdn int64, earlier bool) Stats {
		apart := []CohortStats{
			{Origin: "https://a.example", Cohort: "control", Viewers: viewers, WatchMs: 1000, Usage: UsageStats{CDNBytes: cdn}},
			{Origin: "https://gone.example", Cohort: "control", Viewers: 9},
		}
		st := Stats{Node: name, Rollout: RolloutStats{P2PPercent: 100, Origins: map[string]int{"https://a.example": 0},
			Cohorts: []CohortStats{{Cohort: "p2p"}, {Cohort: "control", Viewers: viewers, Usage: UsageStats{CDNBytes: cdn}}}}}
		if earlier {
			st.Rollout.Sites = apart
		} else {
			st.Rollout.OriginCohorts, st.Rollout.Sites = apart, apart
		}
		return st
	}
	st := mergeStats([]Stats{node("n1", 2, 300, false), node("n2", 3, 400, true)}, 10)
	if len(st.Rollout.OriginCohorts) != 1 || len(st.Rollout.Sites) != 1 {
		t.Fatalf("origin cohorts %+v, sites %+v: want a.example's control cohort alone in each", st.Rollout.OriginCohorts, st.Rollout.Sites)
	}
	s := st.Rollout.OriginCohorts[0]
	if s.Origin != "https://a.example" || s.Viewers != 5 || s.WatchMs != 2000 || s.Usage.CDNBytes != 700 {
		t.Fatalf("merged %+v: want 5 viewers, 2000 ms, 700 CDN bytes", s)
	}
	if c := st.Rollout.Cohorts[1]; c.Viewers != 5 || c.Usage.CDNBytes != 700 {
		t.Fatalf("merged control cohort %+v", c)
	}
}
