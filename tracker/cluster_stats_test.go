package tracker

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/peercdn/peercdn/signaling"
)

// getStatsAt reads n's /stats.json with query (e.g. "?scope=cluster").
func getStatsAt(t *testing.T, n *testNode, query string) Stats {
	t.Helper()
	r, err := http.Get(n.hs.URL + "/stats.json" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var st Stats
	if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func swarmRow(st Stats, sw signaling.Swarm) *SwarmStats {
	for i, r := range st.SwarmStats {
		if r.Content == sw.Content && r.Rendition == sw.Rendition {
			return &st.SwarmStats[i]
		}
	}
	return nil
}

func nodeIDs(st Stats) []string {
	var ids []string
	for _, n := range st.Nodes {
		ids = append(ids, n.Node)
	}
	return ids
}

// /stats.json?scope=cluster, what the dashboard of a clustered node shows,
// sums every live node's figures: peers, viewers' reports, and a swarm
// with viewers on two nodes as one row. /stats.json stays the node's own.
// A node that stops leaves the view; with the store down the view is the
// node's own figures, marked partial.
func TestClusterStats(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			fast := func(c *Config) { c.StatsInterval = 200 * time.Millisecond }
			n1, n2 := startClustered(t, st, fast), startClustered(t, st, fast)
			sw := signaling.Swarm{Content: "/stats-" + st.name + ".m3u8", Rendition: "720p"}
			a, b := n1.dial(t, ""), n2.dial(t, "")
			join(t, a, sw, "")
			join(t, b, sw, "")
			send(t, a, &signaling.Message{Type: signaling.TypePing, Ref: "1", Usage: &signaling.Usage{CDNBytes: 1000, P2PBytes: 3000, UploadBytes: 200, StallMs: 100}})
			expect(t, a, signaling.TypePong, "")
			send(t, b, &signaling.Message{Type: signaling.TypePing, Ref: "2", Usage: &signaling.Usage{CDNBytes: 500, P2PBytes: 1500}})
			expect(t, b, signaling.TypePong, "")

			want := UsageStats{CDNBytes: 1500, P2PBytes: 4500, UploadBytes: 200, StallMs: 100}
			var got Stats
			eventually(t, 5*time.Second, "both nodes' figures in node 1's cluster view", func() bool {
				got = getStatsAt(t, n1, "?scope=cluster")
				row := swarmRow(got, sw)
				return row != nil && row.Peers == 2 && row.UsageStats == want
			})
			if got.Peers != 2 || got.Usage != want || got.Listed != 1 || got.Swarms != 1 || got.Partial {
				t.Errorf("cluster view: %+v", got)
			}
			if ids := nodeIDs(got); len(ids) != 2 || ids[0] != n1.srv.hub.node || !slices.Contains(ids, n2.srv.hub.node) {
				t.Errorf("cluster view lists nodes %v, want node 1 (%s) first and node 2 (%s)", ids, n1.srv.hub.node, n2.srv.hub.node)
			}
			// Node 2's view sums the same, once node 1's figures reach it
			// (node 1's converging says nothing of node 2's: it failed so).
			var o Stats
			eventually(t, 5*time.Second, "both nodes' figures in node 2's cluster view", func() bool {
				o = getStatsAt(t, n2, "?scope=cluster")
				return o.Usage == want && o.Peers == 2
			})
			if o.Node != n2.srv.hub.node {
				t.Errorf("node 2's cluster view: %+v", o)
			}
			own := getStats(t, n1)
			if row := swarmRow(own, sw); own.Nodes != nil || row == nil || row.Peers != 1 || row.CDNBytes != 1000 {
				t.Errorf("node 1's own /stats.json: %+v", own)
			}

			// Node 2 stops: its figures leave the view within 3 intervals.
			b.CloseNow()
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			n2.srv.Drain(ctx)
			cancel()
			n2.srv.Close()
			eventually(t, 5*time.Second, "node 2 gone from the cluster view", func() bool {
				got = getStatsAt(t, n1, "?scope=cluster")
				return len(got.Nodes) == 1
			})
			if got.Usage.CDNBytes != 1000 || got.Peers != 1 {
				t.Errorf("after node 2 stopped: %+v", got)
			}

			if st.down == nil {
				return
			}
			st.down()
			t.Cleanup(st.up)
			eventually(t, 5*time.Second, "a partial view with the store down", func() bool {
				got = getStatsAt(t, n1, "?scope=cluster")
				return got.Partial && got.Cluster == "degraded"
			})
			if len(got.Nodes) != 1 || got.Usage.CDNBytes != 1000 {
				t.Errorf("store down: %+v", got)
			}
		})
	}
	r, err := http.Get(startNode(t, nil).hs.URL + "/stats.json?scope=galaxy")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusBadRequest {
		t.Errorf("scope=galaxy: %s, want 400", r.Status)
	}
}
