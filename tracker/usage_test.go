package tracker

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/peercdn/peercdn/signaling"
)

func getStats(t *testing.T, n *testNode) Stats {
	t.Helper()
	return getStatsAt(t, n, "")
}

// Viewers' usage reports reach the node's totals, their swarm's figures in
// /stats.json and the peercdn_viewer_* counters; an implausible report is
// refused and counts nowhere.
func TestUsageReports(t *testing.T) {
	n := startNode(t, nil)
	a, b := n.dial(t, ""), n.dial(t, "")
	join(t, a, live, "")
	join(t, b, signaling.Swarm{Content: live.Content, Rendition: "360p"}, "")
	send(t, a, &signaling.Message{Type: signaling.TypePing, Ref: "1", Usage: &signaling.Usage{CDNBytes: 1000, P2PBytes: 3000, UploadBytes: 500, StallMs: 200, PeersConnected: 3, PeersFailed: 1}})
	expect(t, a, signaling.TypePong, "")
	send(t, b, &signaling.Message{Type: signaling.TypePing, Ref: "2", Usage: &signaling.Usage{CDNBytes: 4000}})
	expect(t, b, signaling.TypePong, "")

	st := getStats(t, n)
	if want := (UsageStats{CDNBytes: 5000, P2PBytes: 3000, UploadBytes: 500, StallMs: 200, PeersConnected: 3, PeersFailed: 1}); st.Usage != want {
		t.Fatalf("node usage %+v, want %+v", st.Usage, want)
	}
	for _, s := range st.SwarmStats {
		want := UsageStats{CDNBytes: 1000, P2PBytes: 3000, UploadBytes: 500, StallMs: 200, PeersConnected: 3, PeersFailed: 1}
		if s.Rendition == "360p" {
			want = UsageStats{CDNBytes: 4000}
		}
		if s.UsageStats != want {
			t.Errorf("swarm %s: %+v, want %+v", s.Rendition, s.UsageStats, want)
		}
	}
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"cdn", testutil.ToFloat64(n.srv.m.viewerCDN), 5000},
		{"p2p", testutil.ToFloat64(n.srv.m.viewerP2P), 3000},
		{"upload", testutil.ToFloat64(n.srv.m.viewerUp), 500},
		{"stall seconds", testutil.ToFloat64(n.srv.m.viewerStall), 0.2},
		{"peers connected", testutil.ToFloat64(n.srv.m.viewerPeersOK), 3},
		{"peers failed", testutil.ToFloat64(n.srv.m.viewerPeersFail), 1},
	} {
		if c.got != c.want {
			t.Errorf("peercdn_viewer %s = %v, want %v", c.name, c.got, c.want)
		}
	}

	// 1 TB right after the last report: more than 1 Gbit/s could carry.
	send(t, a, &signaling.Message{Type: signaling.TypePing, Ref: "3", Usage: &signaling.Usage{P2PBytes: 1 << 40}})
	if e := expect(t, a, signaling.TypeError, signaling.CodeBadMessage); e.Ref != "3" {
		t.Fatalf("error ref %q", e.Ref)
	}
	// 10 failed connections a second is more than an agent makes.
	send(t, a, &signaling.Message{Type: signaling.TypePing, Ref: "5", Usage: &signaling.Usage{PeersFailed: 5000}})
	expect(t, a, signaling.TypeError, signaling.CodeBadMessage)
	// Negative figures do not pass the decoder.
	a.SendRaw(t.Context(), []byte(`{"type":"ping","ref":"4","usage":{"cdn":-5,"p2p":0,"up":0}}`))
	expect(t, a, signaling.TypeError, signaling.CodeBadMessage)
	if got := getStats(t, n).Usage; got.P2PBytes != 3000 || got.CDNBytes != 5000 || got.PeersFailed != 1 {
		t.Fatalf("refused reports were counted: %+v", got)
	}
}

// The dashboard is one page that draws /stats.json, and keeps to itself.
func TestDashboard(t *testing.T) {
	n := startNode(t, nil)
	r, err := http.Get(n.hs.URL + "/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	body, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(body), "stats.json") || !strings.Contains(r.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("GET /dashboard: %d %v", r.StatusCode, r.Header)
	}
	if strings.Contains(string(body), "innerHTML") {
		t.Fatal("the dashboard must set viewers' strings as text")
	}
}
