package tracker

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/peercdn/peercdn/signaling"
)

// TestSuggestsNearbyPeersFirst: behind a trusted proxy, viewers join from
// an office network (a configured group), from one household's /24 and from
// elsewhere, in a swarm of 37; each newcomer is suggested the peers of its own group before
// any other, and others once those run out.
func TestSuggestsNearbyPeersFirst(t *testing.T) {
	n := startNode(t, func(c *Config) {
		c.TrustedProxies = []string{"127.0.0.1/32", "::1/128"}
		c.Suggestions = 2
		c.Networks = []NetworkGroup{{Name: "office", CIDRs: []string{"10.1.0.0/16", "192.0.2.0/28"}}}
	})
	sw := signaling.Swarm{Content: "/live.m3u8", Rendition: "720p"}
	from := func(ip string) *client {
		return n.dialWith(t, &signaling.DialOptions{Header: http.Header{"X-Forwarded-For": {ip}}})
	}
	ids := map[string]string{} // peer id -> where it joined from
	// 30 viewers from elsewhere make the swarm too big to consider every
	// member (4 x suggestions): nearby peers must be found, not sampled.
	ips := []string{"203.0.113.5", "10.1.4.4", "198.51.100.20", "192.0.2.9", "203.0.114.7", "2001:db8:1::5", "198.51.100.21"}
	for i := range 30 {
		ips = append(ips, fmt.Sprintf("100.64.%d.1", i))
	}
	for _, ip := range ips {
		c := from(ip)
		join(t, c, sw, "")
		ids[c.PeerID()] = ip
	}
	for _, tc := range []struct {
		ip   string
		want []string // all of these, in any order
	}{
		{"10.1.200.3", []string{"10.1.4.4", "192.0.2.9"}},             // the office group (two prefixes)
		{"198.51.100.99", []string{"198.51.100.20", "198.51.100.21"}}, // the same /24
		{"2001:db8:1:0:ffff::1", []string{"2001:db8:1::5"}},           // the same /48, then anyone
	} {
		m := join(t, from(tc.ip), sw, "")
		var got []string
		for _, p := range m.Peers {
			got = append(got, ids[p])
		}
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("newcomer from %s was suggested peers from %v, want %v among them", tc.ip, got, tc.want)
			}
		}
		if len(got) != 2 {
			t.Errorf("newcomer from %s: %d suggestions, want 2", tc.ip, len(got))
		}
	}
	if near := testutil.ToFloat64(n.srv.m.suggestedNear); near < 5 {
		t.Errorf("peercdn_tracker_suggestions_total{peer=near} = %v, want at least the 5 above", near)
	}
}

// TestWebTorrentOffersGoNearbyFirst: on /announce, half of an announce's
// offers go to peers of the announcing socket's network group first: both
// office peers of a 22-peer swarm get one of a newcomer's 4 offers (by
// chance, 1 time in 38).
func TestWebTorrentOffersGoNearbyFirst(t *testing.T) {
	n := startNode(t, func(c *Config) {
		c.TrustedProxies = []string{"127.0.0.1/32", "::1/128"}
		c.Networks = []NetworkGroup{{Name: "office", CIDRs: []string{"10.1.0.0/16"}}}
	})
	ih := id20("infohash")
	from := func(ip string) *wtClient { return n.wtDialWith(t, http.Header{"X-Forwarded-For": {ip}}) }
	var office, others []*wtClient
	for i := range 22 {
		ip, list := fmt.Sprintf("100.64.%d.1", i), &others
		if i == 7 || i == 15 {
			ip, list = fmt.Sprintf("10.1.%d.2", i), &office
		}
		c := from(ip)
		c.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20(fmt.Sprint("peer-", i)), "offers": []any{}})
		c.next()
		*list = append(*list, c)
	}
	var offers []any
	for i := range 4 {
		offers = append(offers, map[string]any{"offer": map[string]any{"type": "offer", "sdp": "v=0"}, "offer_id": id20(fmt.Sprint("offer-", i))})
	}
	newcomer := from("10.1.99.3")
	newcomer.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("newcomer"), "numwant": 4, "offers": offers})
	newcomer.next()
	for i, c := range office {
		if m := c.next(); m["peer_id"] != id20("newcomer") {
			t.Fatalf("office peer %d got %v, want the newcomer's offer", i, m)
		}
	}
	got := 0
	for _, c := range others {
		select {
		case <-c.in:
			got++
		case <-time.After(20 * time.Millisecond):
		}
	}
	if got != 2 {
		t.Fatalf("%d offers went to peers elsewhere, want the other 2", got)
	}
	if near, other := testutil.ToFloat64(n.srv.m.suggestedNear), testutil.ToFloat64(n.srv.m.suggestedOther); near != 2 || other != 2 {
		t.Fatalf("peercdn_tracker_suggestions_total near %v, other %v: want 2 and 2", near, other)
	}
}

// TestClusterMatchesNearbyAcrossNodes: the neighbours of a newcomer are
// connected to another node of the cluster. Both protocols still match it
// with them first: each node records its members' network groups in the
// shared store, and the store samples the newcomer's group first. In a
// swarm of 32 (2 office peers) a node sampling at random would suggest
// both office peers about 1 time in 500, and hand both an offer of 4
// about 1 time in 40.
func TestClusterMatchesNearbyAcrossNodes(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			cfg := func(c *Config) {
				c.TrustedProxies = []string{"127.0.0.1/32", "::1/128"}
				c.Suggestions = 2
				c.Networks = []NetworkGroup{{Name: "office", CIDRs: []string{"10.1.0.0/16"}}}
			}
			n1, n2 := startClustered(t, st, cfg), startClustered(t, st, cfg)
			sw := signaling.Swarm{Content: fmt.Sprint("/near-", st.name, ".m3u8")}
			ih := id20("near-" + st.name)
			ids := map[string]string{} // native peer id or WebTorrent peer_id -> its address
			var office []*wtClient
			for i := range 32 {
				ip := fmt.Sprintf("100.64.%d.1", i)
				if i == 7 || i == 21 {
					ip = fmt.Sprintf("10.1.%d.2", i)
				}
				n := n1
				if i%4 == 3 && i != 7 {
					n = n2 // a few others on node 2; the office peers are on node 1
				}
				h := http.Header{"X-Forwarded-For": {ip}}
				c := n.dialWith(t, &signaling.DialOptions{Header: h})
				join(t, c, sw, "")
				ids[c.PeerID()] = ip
				wc := n.wtDialWith(t, h)
				pid := id20(fmt.Sprint("peer-", i))
				wc.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": pid, "offers": []any{}})
				wc.next()
				ids[pid] = ip
				if strings.HasPrefix(ip, "10.1.") {
					office = append(office, wc)
				}
			}
			h := http.Header{"X-Forwarded-For": {"10.1.99.3"}}
			m := join(t, n2.dialWith(t, &signaling.DialOptions{Header: h}), sw, "")
			var got []string
			for _, p := range m.Peers {
				got = append(got, ids[p])
			}
			if !slices.Contains(got, "10.1.7.2") || !slices.Contains(got, "10.1.21.2") {
				t.Errorf("native newcomer on node 2 was suggested peers from %v, want both office peers on node 1", got)
			}

			var offers []any
			for i := range 4 {
				offers = append(offers, map[string]any{"offer": map[string]any{"type": "offer", "sdp": "v=0"}, "offer_id": id20(fmt.Sprint("offer-", i))})
			}
			newcomer := n2.wtDialWith(t, h)
			newcomer.send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": id20("newcomer"), "numwant": 4, "offers": offers})
			newcomer.next()
			for i, c := range office {
				if m := c.next(); m["peer_id"] != id20("newcomer") || m["offer"] == nil {
					t.Errorf("office peer %d on node 1 got %v, want the newcomer's offer", i, m)
				}
			}
			if near := testutil.ToFloat64(n2.srv.m.suggestedNear); near < 4 {
				t.Errorf("node 2's peercdn_tracker_suggestions_total{peer=near} = %v, want 4 (2 native, 2 offers)", near)
			}
		})
	}
}
