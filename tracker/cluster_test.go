package tracker

import (
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peercdn/peercdn/internal/redistest"
	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/cluster"
)

// store is one shared-store implementation the cluster tests run against:
// the in-process cluster.Memory and a real redis-server.
type store struct {
	name    string
	node    func(t testing.TB, cfg *Config) cluster.Cluster
	down    func()
	up      func()
	restart time.Duration // how long the store takes to be seen again
}

func stores(outer testing.TB) []store {
	mc := cluster.NewMemory(3 * time.Second)
	mem := store{
		name: "memory",
		node: func(t testing.TB, cfg *Config) cluster.Cluster { return mc.Node() },
		down: func() { mc.SetDown(true) },
		up:   func() { mc.SetDown(false) },
	}
	var rs *redistest.Server
	red := store{
		name: "redis",
		node: func(t testing.TB, cfg *Config) cluster.Cluster {
			redistest.Need(t)
			if rs == nil {
				// Owned by the outer test: a benchmark runs its function
				// several times, each with a new (and cleaned up) b.
				rs = redistest.Start(outer)
			}
			rc, err := cluster.NewRedis(cluster.RedisOptions{URL: rs.URL(), MemberTTL: cfg.MemberTTL,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			return rc
		},
		down: func() { rs.Stop() },
		up:   func() { rs.Restart() },
	}
	var rcl *redistest.Cluster
	redCluster := store{
		name: "redis-cluster",
		node: func(t testing.TB, cfg *Config) cluster.Cluster {
			redistest.Need(t)
			if rcl == nil {
				rcl = redistest.StartCluster(outer, 3)
			}
			rc, err := cluster.NewRedis(cluster.RedisOptions{URL: rcl.URL(), Cluster: true, MemberTTL: cfg.MemberTTL,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			return rc
		},
		// No outage test: restarting a cluster is a different drill.
	}
	return []store{mem, red, redCluster}
}

// startClustered starts a node of st's cluster with a 3 s member expiry.
func startClustered(t testing.TB, st store, mutate ...func(*Config)) *testNode {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.MemberTTL = 3 * time.Second
	cfg.HashDistinctNetworks = false // every client here is 127.0.0.1
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := NewClustered(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, st.node(t, &cfg))
	if err != nil {
		t.Fatal(err)
	}
	n := serveNode(t, srv)
	eventually(t, 5*time.Second, "cluster store up", srv.cluster.Up)
	return n
}

// askPeers requests suggestions for sw and returns them.
func askPeers(t testing.TB, c *client, sw signaling.Swarm) []string {
	t.Helper()
	send(t, c, &signaling.Message{Type: signaling.TypePeers, Swarm: &sw})
	return expect(t, c, signaling.TypePeers, "").Peers
}

func TestClusterMatchesAndRelaysAcrossNodes(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			n1, n2 := startClustered(t, st), startClustered(t, st)
			a := n1.dial(t, "")
			b := n2.dial(t, "")
			c := n2.dial(t, "")
			if cluster.NodeOf(a.PeerID()) != n1.srv.hub.node || cluster.NodeOf(b.PeerID()) != n2.srv.hub.node {
				t.Fatalf("peer ids %s %s do not name their nodes", a.PeerID(), b.PeerID())
			}
			join(t, a, live, "")
			if m := join(t, b, live, ""); !slices.Contains(m.Peers, a.PeerID()) {
				t.Fatalf("b on node 2 was offered %v, not a on node 1", m.Peers)
			}
			// Suggestions go both ways.
			if ps := askPeers(t, a, live); !slices.Contains(ps, b.PeerID()) {
				t.Fatalf("a was offered %v, not b", ps)
			}
			// A full exchange across nodes: offer, answer, candidates.
			send(t, b, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: a.PeerID(), OfferID: "o1", SDP: "v=0 offer"})
			got := expect(t, a, signaling.TypeOffer, "")
			if got.From != b.PeerID() || got.SDP != "v=0 offer" || got.OfferID != "o1" || *got.Swarm != live {
				t.Fatalf("offer arrived as %+v", got)
			}
			send(t, a, &signaling.Message{Type: signaling.TypeAnswer, Swarm: &live, To: b.PeerID(), OfferID: "o1", SDP: "v=0 answer"})
			if got := expect(t, b, signaling.TypeAnswer, ""); got.From != a.PeerID() || got.SDP != "v=0 answer" {
				t.Fatalf("answer arrived as %+v", got)
			}
			send(t, a, &signaling.Message{Type: signaling.TypeCandidate, Swarm: &live, To: b.PeerID(), OfferID: "o1", Candidate: "candidate:1"})
			expect(t, b, signaling.TypeCandidate, "")
			send(t, b, &signaling.Message{Type: signaling.TypeCandidate, Swarm: &live, To: a.PeerID(), OfferID: "o1", Candidate: "candidate:2"})
			expect(t, a, signaling.TypeCandidate, "")

			// c (node 2) never got an offer from a: it cannot answer one in
			// a's name, nor can it answer b's offer to a. Checked on c's node.
			join(t, c, live, "")
			send(t, c, &signaling.Message{Type: signaling.TypeAnswer, Swarm: &live, To: a.PeerID(), OfferID: "o1", SDP: "forged"})
			expect(t, c, signaling.TypeError, signaling.CodeUnknownOffer)
			// a answering an offer c never made: refused on a's node.
			send(t, a, &signaling.Message{Type: signaling.TypeAnswer, Swarm: &live, To: c.PeerID(), OfferID: "o9", SDP: "forged"})
			expect(t, a, signaling.TypeError, signaling.CodeUnknownOffer)
			expectNothing(t, c, 300*time.Millisecond)

			// An offer to a peer of another swarm is refused by the target's
			// node, and the error comes back to the sender.
			other := signaling.Swarm{Content: "/other.m3u8"}
			d := n1.dial(t, "")
			join(t, d, other, "")
			send(t, b, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: d.PeerID(), OfferID: "o2", SDP: "x", Ref: "r2"})
			if e := expect(t, b, signaling.TypeError, signaling.CodeUnknownPeer); e.Ref != "r2" {
				t.Fatalf("error ref %q, want r2", e.Ref)
			}
			expectNothing(t, d, 300*time.Millisecond)

			// Origins scope swarms across nodes too.
			e := n2.dial(t, "https://other.example")
			if m := join(t, e, live, ""); len(m.Peers) != 0 {
				t.Fatalf("a page of another origin was offered %v", m.Peers)
			}
		})
	}
}

func TestClusterLeaveAndExpiry(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			n1, n2 := startClustered(t, st), startClustered(t, st)
			a, a2 := n1.dial(t, ""), n1.dial(t, "")
			b := n2.dial(t, "")
			join(t, a, live, "")
			join(t, a2, live, "")
			join(t, b, live, "")
			// A leave is seen by the other node at once.
			send(t, a2, &signaling.Message{Type: signaling.TypeLeave, Swarm: &live})
			slowly(t, 2*time.Second, "a2 gone from node 2's view", func() bool {
				return !slices.Contains(askPeers(t, b, live), a2.PeerID())
			})
			// Node 1 dies without a word (its refresh stops; connections
			// stay open as a frozen process's would): its peers leave node
			// 2's swarm within the 3 s expiry.
			if ps := askPeers(t, b, live); !slices.Contains(ps, a.PeerID()) {
				t.Fatalf("b was offered %v before the crash, not a", ps)
			}
			killed := time.Now()
			n1.srv.Close()
			slowly(t, 5*time.Second, "node 1's peers expired", func() bool {
				return !slices.Contains(askPeers(t, b, live), a.PeerID())
			})
			if d := time.Since(killed); d > 3*time.Second+time.Second {
				t.Fatalf("node 1's peer outlived it by %v (expiry 3s, refresh 1s)", d)
			}
		})
	}
}

func TestClusterStoreOutage(t *testing.T) {
	for _, st := range stores(t) {
		if st.down == nil {
			continue
		}
		t.Run(st.name, func(t *testing.T) {
			n1, n2 := startClustered(t, st), startClustered(t, st)
			a := n1.dial(t, "")
			b := n2.dial(t, "")
			join(t, a, live, "")
			join(t, b, live, "")

			st.down()
			eventually(t, 5*time.Second, "node 1 sees the outage", func() bool { return !n1.srv.cluster.Up() })
			eventually(t, 5*time.Second, "node 2 sees the outage", func() bool { return !n2.srv.cluster.Up() })
			// Health stays green; readiness says degraded but keeps the node
			// in rotation; the gauge says 0.
			if code, body := get(t, n1.hs.URL+"/healthz"); code != 200 || body != "ok\n" {
				t.Fatalf("/healthz %d %q", code, body)
			}
			if code, body := get(t, n1.hs.URL+"/readyz"); code != 200 || !strings.HasPrefix(body, "degraded") {
				t.Fatalf("/readyz %d %q", code, body)
			}
			eventually(t, 3*time.Second, "/metrics says peercdn_tracker_cluster_up 0", func() bool {
				_, body := get(t, n1.hs.URL+"/metrics")
				return strings.Contains(body, "peercdn_tracker_cluster_up 0")
			})
			// Local matching and relay go on.
			a2 := n1.dial(t, "")
			if m := join(t, a2, live, ""); !slices.Contains(m.Peers, a.PeerID()) {
				t.Fatalf("local match during the outage: a2 offered %v", m.Peers)
			}
			send(t, a2, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: a.PeerID(), OfferID: "o", SDP: "x"})
			expect(t, a, signaling.TypeOffer, "")
			// A relay to the other node fails with a clear code.
			send(t, a, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: b.PeerID(), OfferID: "o", SDP: "x"})
			expect(t, a, signaling.TypeError, signaling.CodeUnavailable)

			back := time.Now()
			st.up() // empty: the nodes must re-announce their members
			slowly(t, 30*time.Second, "cross-node matching back", func() bool {
				return slices.Contains(askPeers(t, b, live), a.PeerID())
			})
			t.Logf("cross-node matching back %v after the store", time.Since(back).Round(100*time.Millisecond))
			if code, body := get(t, n1.hs.URL+"/readyz"); code != 200 || body != "ready\n" {
				t.Fatalf("/readyz after the outage %d %q", code, body)
			}
			send(t, b, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: a.PeerID(), OfferID: "o3", SDP: "y"})
			slowly(t, 10*time.Second, "relay across nodes again", func() bool {
				for _, m := range drain(a, 200*time.Millisecond) {
					if m.Type == signaling.TypeOffer && m.From == b.PeerID() {
						return true
					}
				}
				send(t, b, &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: a.PeerID(), OfferID: "o3", SDP: "y"})
				return false
			})
		})
	}
}

// slowly is eventually for conditions that cost a tracker request: it polls
// every 250 ms, well within the message rate limit.
func slowly(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRedisUnreachableAtStart: a node whose Redis is not there yet starts,
// serves its own viewers degraded, and joins the cluster by itself once
// Redis answers.
func TestRedisUnreachableAtStart(t *testing.T) {
	rs := redistest.Stopped(t)
	start := func() *testNode {
		return startNode(t, func(c *Config) { c.Redis = rs.URL(); c.MemberTTL = 3 * time.Second })
	}
	n1, n2 := start(), start()
	if n1.srv.cluster.Up() {
		t.Fatal("up with no Redis")
	}
	if code, body := get(t, n1.hs.URL+"/readyz"); code != 200 || !strings.HasPrefix(body, "degraded") {
		t.Fatalf("/readyz %d %q", code, body)
	}
	a, a2, b := n1.dial(t, ""), n1.dial(t, ""), n2.dial(t, "")
	join(t, a, live, "")
	if m := join(t, a2, live, ""); !slices.Contains(m.Peers, a.PeerID()) {
		t.Fatalf("local matching without Redis: %v", m.Peers)
	}
	join(t, b, live, "")
	rs.Restart()
	back := time.Now()
	slowly(t, 30*time.Second, "cross-node matching once Redis is there", func() bool {
		return slices.Contains(askPeers(t, b, live), a.PeerID())
	})
	t.Logf("matched across nodes %v after Redis came up", time.Since(back).Round(100*time.Millisecond))
}

// TestClusterHashQuorum: hash reports made on different nodes count toward
// one quorum, and every node's viewers hear the trusted hash.
func TestClusterHashQuorum(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			quorum := func(c *Config) { c.Integrity = IntegrityQuorum }
			n1, n2 := startClustered(t, st, quorum), startClustered(t, st, quorum)
			a, b, c := n1.dial(t, ""), n2.dial(t, ""), n2.dial(t, "")
			for _, x := range []*client{a, b, c} {
				join(t, x, live, "")
			}
			reportHash(t, a, "5", hashA)
			time.Sleep(200 * time.Millisecond) // the vote crosses to node 2
			reportHash(t, b, "5", hashA)
			for _, x := range []*client{a, b, c} {
				expectHash(t, x, "5", hashA)
			}
		})
	}
}

// TestClusterNotary: the notary's hash found on one node reaches the
// viewers of every node, and the segment is fetched once for the cluster.
func TestClusterNotary(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			body := []byte("segment bytes")
			cdn, hits := segmentOrigin(t, body)
			private := func(c *Config) { c.NotaryPrivate = true }
			n1, n2 := startClustered(t, st, private), startClustered(t, st, private)
			a, b := n1.dial(t, ""), n2.dial(t, "")
			join(t, a, live, "")
			join(t, b, live, "")
			send(t, a, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(cdn.URL + "/5.ts"), SHA256: sumOf(body), URL: cdn.URL + "/5.ts"})
			expectHash(t, b, segOf(cdn.URL+"/5.ts"), sumOf(body))
			if hits.Load() != 1 {
				t.Fatalf("fetched %d times", hits.Load())
			}
		})
	}
}

// WebTorrent swarms span nodes too: an offer made on one node reaches a
// peer on the other, its answer comes back, and a forged answer does not.
func TestClusterWebTorrentAcrossNodes(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			n1, n2 := startClustered(t, st), startClustered(t, st)
			ih := id20("cluster-ih")
			a, b, c := n1.wtDial(t), n2.wtDial(t), n2.wtDial(t)
			a.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("peer-a"), "numwant": 5, "offers": []any{}})
			a.next()
			b.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("peer-b"), "numwant": 5,
				"offers": []any{map[string]any{"offer": map[string]any{"type": "offer", "sdp": "v=0 b"}, "offer_id": id20("offer-1")}}})
			// Swarm sizes count every node's peers.
			if resp := b.next(); resp["complete"] != 0.0 || resp["incomplete"] != 2.0 {
				t.Fatalf("b's announce response %v: want complete 0, incomplete 2 (a on node 1, b)", resp)
			}
			got := a.next()
			if got["peer_id"] != id20("peer-b") || got["offer_id"] != id20("offer-1") || got["info_hash"] != ih ||
				got["offer"].(map[string]any)["sdp"] != "v=0 b" {
				t.Fatalf("a on node 1 got %v", got)
			}
			// c, on b's node, forges a's answer: dropped on c's node.
			c.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("peer-c"), "offers": []any{},
				"event": "completed", "left": 0})
			if resp := c.next(); resp["complete"] != 1.0 || resp["incomplete"] != 2.0 {
				t.Fatalf("c's announce response %v: want complete 1 (c), incomplete 2", resp)
			}
			// A scrape on node 1 sees node 2's seed.
			a.send(map[string]any{"action": "scrape", "info_hash": ih})
			files, _ := a.next()["files"].(map[string]any)
			if f, _ := files[ih].(map[string]any); f["complete"] != 1.0 || f["incomplete"] != 2.0 {
				t.Fatalf("scrape on node 1: %v", files)
			}
			c.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("peer-c"), "to_peer_id": id20("peer-b"),
				"offer_id": id20("offer-1"), "answer": map[string]any{"type": "answer", "sdp": "forged"}})
			b.quiet(300 * time.Millisecond)
			a.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("peer-a"), "to_peer_id": id20("peer-b"),
				"offer_id": id20("offer-1"), "answer": map[string]any{"type": "answer", "sdp": "v=0 a"}})
			ans := b.next()
			if ans["peer_id"] != id20("peer-a") || ans["offer_id"] != id20("offer-1") || ans["answer"].(map[string]any)["sdp"] != "v=0 a" {
				t.Fatalf("b got %v", ans)
			}
			// a leaves: its membership goes from the store, so b's next
			// offers reach only c.
			a.ws.CloseNow()
			eventually(t, 5*time.Second, "a gone from node 1", func() bool { s, _ := n1.srv.wt.counts(); return s == 0 })
			b.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("peer-b"), "numwant": 5,
				"offers": []any{
					map[string]any{"offer": map[string]any{"type": "offer", "sdp": "v=0 b2"}, "offer_id": id20("offer-2")},
					map[string]any{"offer": map[string]any{"type": "offer", "sdp": "v=0 b3"}, "offer_id": id20("offer-3")},
				}})
			b.next()
			if got := c.next(); got["peer_id"] != id20("peer-b") {
				t.Fatalf("c got %v", got)
			}
			c.quiet(300 * time.Millisecond) // one other peer: one offer
			// The seed stops: it leaves the counts of the store too.
			c.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("peer-c"), "event": "stopped"})
			eventually(t, 5*time.Second, "c's seed gone from the counts", func() bool {
				b.send(map[string]any{"action": "scrape", "info_hash": ih})
				files, _ := b.next()["files"].(map[string]any)
				f, _ := files[ih].(map[string]any)
				return f["complete"] == 0.0 && f["incomplete"] == 1.0
			})
		})
	}
}

// TestRedisUnreachableSaysSoAtOnce: a node pointed at a Redis that never
// answers warns and counts from its first health check, not only after
// having once been up.
func TestRedisUnreachableSaysSoAtOnce(t *testing.T) {
	rs := redistest.Stopped(t)
	var logs lockedLog
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.Redis = rs.URL()
	srv, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	eventually(t, 3*time.Second, "the warning", func() bool { return strings.Contains(logs.String(), "redis unreachable") })
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var failures float64
	for _, mf := range mfs {
		if mf.GetName() == "peercdn_tracker_cluster_ping_failures_total" {
			failures = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if failures < 1 {
		t.Fatalf("ping failures counted %v, want at least 1", failures)
	}
}

// lockedLog is a log sink written by the node's goroutines.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
