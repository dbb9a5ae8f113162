package interop

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/webtorrent"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	peercdn "github.com/peercdn/peercdn/tracker"
)

// TestAnacrolixWebTorrentClients: two WebTorrent tracker clients from
// anacrolix/torrent announce one info_hash to peercdn's /announce; the
// second one's offer reaches the first, whose answer comes back through
// peercdn. (ICE itself is not the point: this runs in a network namespace
// with only loopback, where pion gathers no candidates.)
func TestAnacrolixWebTorrentClients(t *testing.T) {
	cfg := peercdn.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	reg := prometheus.NewRegistry()
	srv, err := peercdn.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/announce"

	var ih [20]byte
	copy(ih[:], "peercdn-interop-test")
	newClient := func(id string) *webtorrent.TrackerClient {
		var pid [20]byte
		copy(pid[:], id)
		tc := &webtorrent.TrackerClient{
			Url:    url,
			PeerId: pid,
			GetAnnounceRequest: func(ev tracker.AnnounceEvent, _ [20]byte) (tracker.AnnounceRequest, error) {
				return tracker.AnnounceRequest{Event: ev, NumWant: 5, Left: 1}, nil
			},
			OnConn:               func(webtorrent.DataChannelConn, webtorrent.DataChannelContext) {},
			OnAnnounceSuccessful: func(string) {},
			OnConnected:          func(error) {},
			OnDisconnected:       func(error) {},
			OnAnnounceError:      func(ih string, err error) { t.Logf("announce error: %v", err) },
			Slogger:              slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		tc.Start(func(err error) {})
		t.Cleanup(func() { tc.Close() })
		return tc
	}
	a := newClient("-AA0001-aaaaaaaaaaaa")
	if err := a.Announce(tracker.Started, ih); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	b := newClient("-BB0001-bbbbbbbbbbbb")
	if err := b.Announce(tracker.Started, ih); err != nil {
		t.Fatal(err)
	}
	// b's offer handed to a, and a's answer relayed back to b.
	deadline := time.Now().Add(20 * time.Second)
	for count(t, reg, "wt_offer_relayed") < 1 || count(t, reg, "wt_answer_relayed") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("offers relayed %v, answers relayed %v: want an offer and its answer",
				count(t, reg, "wt_offer_relayed"), count(t, reg, "wt_answer_relayed"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("announces %v, offers relayed %v, answers relayed %v", count(t, reg, "wt_announce"),
		count(t, reg, "wt_offer_relayed"), count(t, reg, "wt_answer_relayed"))
}

// count reads peercdn_tracker_messages_total{type}.
func count(t *testing.T, reg *prometheus.Registry, typ string) float64 {
	for _, mf := range gather(t, reg) {
		if mf.GetName() != "peercdn_tracker_messages_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == typ {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func gather(t *testing.T, reg *prometheus.Registry) []*dto.MetricFamily {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}
