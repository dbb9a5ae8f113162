package democdn

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// newDemo is the origin of the demo stream.
func newDemo(t *testing.T) *Origin {
	o, err := Sample()
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func demoOrigin(t *testing.T, now time.Time) *httptest.Server {
	o := newDemo(t)
	o.now = func() time.Time { return now }
	hs := httptest.NewServer(o)
	t.Cleanup(hs.Close)
	return hs
}

func fetch(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	b, _ := io.ReadAll(resp.Body)
	return b
}

// decodeTimes returns each track's tfdt in a media segment.
func decodeTimes(t *testing.T, seg []byte) map[uint32]uint64 {
	out := map[uint32]uint64{}
	var track uint32
	var walk func(b []byte) error
	walk = func(b []byte) error {
		return boxes(b, func(typ string, s, e int) error {
			p := b[s:e]
			switch typ {
			case "moof", "traf":
				return walk(p)
			case "tfhd":
				track = binary.BigEndian.Uint32(p[4:])
			case "tfdt":
				out[track] = binary.BigEndian.Uint64(p[4:])
			}
			return nil
		})
	}
	if err := walk(seg); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLiveTimelineIsContinuous: the live view loops the title without a
// discontinuity; the segment after a loop's last one starts 60 s (one
// loop) after the loop's first, for every track, and playlists carry no
// discontinuity tags.
func TestLiveTimelineIsContinuous(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 1, 0, time.UTC)
	hs := demoOrigin(t, now)
	pl := string(fetch(t, hs.URL+"/live/180p/index.m3u8"))
	if strings.Contains(pl, "DISCONTINUITY") {
		t.Fatalf("live playlist has discontinuities:\n%s", pl)
	}
	newest := uint64(now.Unix()/2) - 1
	loopStart := newest - newest%30 // a segment that begins a loop
	if loopStart+30 > newest {
		loopStart -= 30
	}
	get := func(n uint64) map[uint32]uint64 {
		return decodeTimes(t, fetch(t, hs.URL+"/live/180p/"+strconv.FormatUint(n, 10)+".m4s"))
	}
	a, b, last := get(loopStart), get(loopStart+30), get(loopStart+29)
	scales := map[uint32]uint64{1: 12800, 2: 48000}
	for track, scale := range scales {
		if b[track]-a[track] != 60*scale {
			t.Errorf("track %d: one loop later the decode time moved %d, want %d", track, b[track]-a[track], 60*scale)
		}
		if b[track] <= last[track] {
			t.Errorf("track %d: decode time went back across the loop: %d after %d", track, b[track], last[track])
		}
	}
	if vod := decodeTimes(t, fetch(t, hs.URL+"/vod/180p/000.m4s")); vod[1] != 0 {
		t.Errorf("VOD segment shifted: %v", vod)
	}
}

// TestPacedResponses: Latency holds the headers back, BytesPerSecond paces
// the body, as a CDN farther and slower than loopback (benchmarks).
func TestPacedResponses(t *testing.T) {
	o := newDemo(t)
	o.Latency = 100 * time.Millisecond
	o.BytesPerSecond = 200_000
	hs := httptest.NewServer(o)
	t.Cleanup(hs.Close)
	start := time.Now()
	resp, err := http.Get(hs.URL + "/vod/360p/000.m4s")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ttfb := time.Since(start)
	b, _ := io.ReadAll(resp.Body)
	took := time.Since(start)
	want := o.Latency + time.Duration(float64(len(b))/float64(o.BytesPerSecond)*float64(time.Second))
	t.Logf("%d bytes: first byte after %v, all after %v (want about %v)", len(b), ttfb, took, want)
	if ttfb < o.Latency || took < want-60*time.Millisecond || took > want+time.Second {
		t.Errorf("%d bytes took %v (first byte %v), want about %v", len(b), took, ttfb, want)
	}
	if resp.Header.Get("Timing-Allow-Origin") != "*" {
		t.Errorf("no Timing-Allow-Origin: pages cannot tell cache hits from CDN loads")
	}
}

// TestDigests: with Digests, a HEAD of a VOD or live segment carries the
// SHA-256 of the body a GET sends (Repr-Digest, RFC 9530); without, none.
func TestDigests(t *testing.T) {
	o := newDemo(t)
	now := time.Now()
	o.now = func() time.Time { return now }
	hs := httptest.NewServer(o)
	t.Cleanup(hs.Close)
	live := hs.URL + "/live/360p/" + strconv.FormatUint(o.newest(o.renditions["360p"], now), 10) + ".m4s"
	for _, url := range []string{hs.URL + "/vod/360p/000.m4s", live} {
		for _, on := range []bool{false, true} {
			o.Digests = on
			resp, err := http.Head(url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := resp.Header.Get("Repr-Digest")
			sum := sha256.Sum256(fetch(t, url))
			want := ""
			if on {
				want = "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
			}
			if got != want {
				t.Errorf("%s, digests %v: Repr-Digest %q, want %q", url, on, got, want)
			}
		}
	}
}
