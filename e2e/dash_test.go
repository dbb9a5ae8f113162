//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// DASH in the browser: the demo serves its stream as DASH (democdn's
// dash.go), and Shaka Player and dash.js viewers of it form swarms as
// hls.js viewers of HLS do. Every test runs with ?verify=1: each segment
// the agent hands the player is compared with the CDN's bytes (the same
// byte range, for ranged segments).

// TestShakaDASHLiveSwarm: 4 Shaka viewers of the live DASH stream
// (SegmentTimeline, $Time$, audio and video in separate swarms).
func TestShakaDASHLiveSwarm(t *testing.T) {
	liveDASHSwarm(t, "shaka.html", `JSON.stringify({bw: demoPlayer.getStats().estimatedBandwidth})`)
}

// TestDashjsLiveSwarm: 4 dash.js viewers of the live DASH stream, through
// peercdn.dashjs(player). dash.js's throughput estimate (kbit/s) is fed
// from the agent's progress events: the CDN's figures, as for the other
// players.
func TestDashjsLiveSwarm(t *testing.T) {
	liveDASHSwarm(t, "dashjs.html", `JSON.stringify({bw: 1000 * demoPlayer.getAverageThroughput('video')})`)
}

// liveDASHSwarm plays the live DASH demo on page with 4 viewers for 60 s:
// every viewer gets bytes from peers, offload at least 0.55, no stall,
// every agent segment the CDN's bytes, the tracker's figures the pages',
// and each player's bandwidth estimate (abrJS) the CDN's, with the CDN
// paced (abrCDN). Paced, the players' startup buffers come slower and
// offload moved down: 0.591-0.679 over ten runs of the two tests (0.642-
// 0.662 unpaced); 0.6 failed CI once at 0.591. Without peers it is 0.
func liveDASHSwarm(t *testing.T, page, abrJS string) {
	t.Helper()
	addr, _ := serve(t, abrCDN...)
	first, last := play(t, "http://"+addr+"/"+page+"?verify=1&trace=1&src=/demo/dash/live/manifest.mpd", 4, 60*time.Second, nil)
	checkSwarm(t, first, last, 60*time.Second, swarmWant{minWithP2P: 4, minOffload: 0.55})
	checkVerified(t, lastViews)
	checkReports(t, addr, last)
	checkABREstimates(t, lastViews, abrJS)
}

// TestShakaDASHByteRanges: 4 Shaka viewers of the VOD as SegmentBase: each
// representation is one file, its segments byte ranges found through its
// sidx. Viewers asking for the same range meet in the file's swarm. Three
// of the four must get bytes from peers: the first viewer leads the VOD,
// and nobody holds what it needs before it does (it got 170 KB from peers
// in one run, none in the next, after its waits for peers that never paid
// were shortened).
func TestShakaDASHByteRanges(t *testing.T) {
	addr, _ := serve(t, "--demo")
	first, last := play(t, "http://"+addr+"/shaka.html?verify=1&src=/demo/dash/vod-ranges/manifest.mpd", 4, 40*time.Second, nil)
	checkSwarm(t, first, last, 40*time.Second, swarmWant{minWithP2P: 3, minOffload: 0.6})
	checkVerified(t, lastViews)
}

// TestHlsjsByteRanges: 4 hls.js viewers of the same files as HLS with
// EXT-X-BYTERANGE (audio as its own rendition group): hls.js byte-range
// fragments go through the agent as Shaka's DASH ranges do.
func TestHlsjsByteRanges(t *testing.T) {
	addr, _ := serve(t, "--demo")
	first, last := play(t, "http://"+addr+"/?verify=1&src=/demo/dash/vod-ranges/master.m3u8", 4, 40*time.Second, nil)
	checkSwarm(t, first, last, 40*time.Second, swarmWant{minWithP2P: 4, minOffload: 0.6})
	checkVerified(t, lastViews)
}

// TestMixedPlayersShareHLS: hls.js and Shaka viewers of the same HLS
// stream meet in one swarm: they name segments alike (by URL path), so
// both kinds get bytes from peers.
func TestMixedPlayersShareHLS(t *testing.T) {
	addr, _ := serve(t, "--demo")
	base := "http://" + addr
	first, last := playPages(t, []string{base + "/?verify=1", base + "/shaka.html?verify=1", base + "/?verify=1", base + "/shaka.html?verify=1"}, 60*time.Second, nil)
	checkSwarm(t, first, last, 60*time.Second, swarmWant{minWithP2P: 4, minOffload: 0.5})
	checkVerified(t, lastViews)
}

// checkVerified: every page compared each segment the agent returned with
// the CDN's bytes (the verify option), and none differed.
func checkVerified(t *testing.T, views []context.Context) {
	t.Helper()
	time.Sleep(2 * time.Second) // the last comparisons' fetches
	for i, v := range views {
		raw, err := chromedp.Run(v, chromedp.Evaluate[string](`JSON.stringify(window.__verify || {ok: 0, bad: []})`))
		if err != nil {
			t.Fatalf("viewer %d: %v", i, err)
		}
		var got struct {
			OK  int               `json:"ok"`
			Bad []json.RawMessage `json:"bad"`
		}
		if err := json.Unmarshal([]byte(raw), &got); err != nil {
			t.Fatal(err)
		}
		t.Logf("viewer %d: %d segments from the agent matched the CDN's bytes, %d did not", i, got.OK, len(got.Bad))
		if got.OK == 0 {
			t.Errorf("viewer %d: no segment came through the agent", i)
		}
		for _, b := range got.Bad {
			t.Errorf("viewer %d: the agent returned other bytes than the CDN's: %s", i, b)
		}
	}
}
