package democdn

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peercdn/peercdn/hashfile"
)

// TestDemuxedTracksKeepTheirSamples: each DASH representation's fragment
// holds exactly its track's samples from the muxed file (the mdat is the
// track's bytes, the data offsets point at them), and its timing is the
// muxed file's.
func TestDemuxedTracksKeepTheirSamples(t *testing.T) {
	o := newDemo(t)
	reps, err := o.dashReps()
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 3 {
		t.Fatalf("%d representations, want 2 video and 1 audio", len(reps))
	}
	for _, r := range reps {
		ts, err := tracks(r.init)
		if err != nil || len(ts) != 1 || ts[0].id != r.track.id {
			t.Fatalf("%s: init holds tracks %+v (%v), want only %d", r.id, ts, err, r.track.id)
		}
		var at uint64
		for i, f := range r.frags {
			again, err := fragmentForTrack(r.fragBytes(i), r.track)
			if err != nil {
				t.Fatalf("%s fragment %d does not parse: %v", r.id, i, err)
			}
			if string(again.mdat) != string(f.mdat) || again.decodeTime != f.decodeTime || again.duration != f.duration {
				t.Fatalf("%s fragment %d: its data offsets do not point at its samples", r.id, i)
			}
			if f.decodeTime != at {
				t.Fatalf("%s fragment %d starts at %d, the one before ended at %d", r.id, i, f.decodeTime, at)
			}
			at += f.duration
		}
		// The single file's sidx indexes exactly the fragments.
		got, err := hashfile.SidxRanges(r.file)
		if err != nil || len(got) != len(r.frags)+1 || got[0] != [2]int64{0, int64(r.initEnd)} {
			t.Fatalf("%s: sidx ranges %v (%v)", r.id, got, err)
		}
		for i := range r.frags {
			if a, b := r.fragRange(i); got[i+1] != [2]int64{int64(a), int64(b)} {
				t.Fatalf("%s: sidx range %d is %v, fragment at %d-%d", r.id, i, got[i+1], a, b)
			}
		}
		if want := r.loopTicks; at < want-uint64(r.track.timescale)/10 || at > want+uint64(r.track.timescale)/10 {
			t.Fatalf("%s lasts %d ticks, want about %d", r.id, at, want)
		}
	}
}

// TestDASHViews: every MPD is well-formed XML and names segments the
// origin serves; the byte ranges of vod-ranges and vod-list are the bytes
// the hash manifest lists; the live MPD lists the live window by $Time$.
func TestDASHViews(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 1, 0, time.UTC)
	hs := demoOrigin(t, now)
	base := hs.URL + "/dash/"
	for _, view := range []string{"live", "vod", "vod-ranges", "vod-list"} {
		mpd := fetch(t, base+view+"/manifest.mpd")
		if err := xml.Unmarshal(mpd, new(struct{ XMLName xml.Name })); err != nil {
			t.Fatalf("%s: %v\n%s", view, err, mpd)
		}
	}

	// vod: $Number$ from 0.
	for _, p := range []string{"vod/v360p/init.mp4", "vod/v360p/0.m4s", "vod/audio/29.m4s"} {
		fetch(t, base+p)
	}
	if code := status(t, base+"vod/v360p/30.m4s", ""); code != http.StatusNotFound {
		t.Fatalf("segment past the end: HTTP %d", code)
	}

	// vod-ranges: the sidx view's ranges are the manifest's.
	var m hashfile.Manifest
	if err := json.Unmarshal(fetch(t, base+"vod-ranges/"+hashfile.Name), &m); err != nil {
		t.Fatal(err)
	}
	sums, err := hashfile.Decode(fetch(t, base+"vod-ranges/"+hashfile.Name))
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 3*31 {
		t.Fatalf("%d ranges listed, want 3 x (init + 30 segments)", len(sums))
	}
	list := string(fetch(t, base+"vod-list/manifest.mpd"))
	ranges := regexp.MustCompile(`mediaRange="(\d+)-(\d+)"`).FindAllStringSubmatch(list, -1)
	if len(ranges) != 3*30 {
		t.Fatalf("vod-list lists %d ranges", len(ranges))
	}
	for _, rg := range ranges[:3] {
		name := hashfile.RangeName("v180p.mp4", atoi(rg[1]), atoi(rg[2]))
		if _, ok := sums[name]; !ok {
			t.Fatalf("vod-list range %s-%s is not in the hash manifest", rg[1], rg[2])
		}
		b := get(t, base+"vod-ranges/v180p.mp4", "bytes="+rg[1]+"-"+rg[2], http.StatusPartialContent)
		if hashfile.Sum(b) != m.SHA256[name] {
			t.Fatalf("range %s: bytes do not match the manifest", name)
		}
	}

	// The same files as HLS byte ranges: hls.js names them as Shaka does.
	master := string(fetch(t, base+"vod-ranges/master.m3u8"))
	if !strings.Contains(master, `#EXT-X-MEDIA:TYPE=AUDIO`) || !strings.Contains(master, "v360p.m3u8") {
		t.Fatalf("master playlist:\n%s", master)
	}
	media := string(fetch(t, base+"vod-ranges/v180p.m3u8"))
	br := regexp.MustCompile(`#EXT-X-BYTERANGE:(\d+)@(\d+)`).FindAllStringSubmatch(media, -1)
	if len(br) != 30 {
		t.Fatalf("%d byte ranges in the media playlist", len(br))
	}
	if first := atoi(br[0][2]); hashfile.RangeName("v180p.mp4", first, first+atoi(br[0][1])-1) != hashfile.RangeName("v180p.mp4", atoi(ranges[0][1]), atoi(ranges[0][2])) {
		t.Fatalf("HLS range %s@%s is not the MPD's first range %s-%s", br[0][1], br[0][2], ranges[0][1], ranges[0][2])
	}

	// live: the timeline's times are served up to the live edge, not after.
	live := string(fetch(t, base+"live/manifest.mpd"))
	if !strings.Contains(live, `type="dynamic"`) || !strings.Contains(live, "UTCTiming") {
		t.Fatalf("live MPD:\n%s", live)
	}
	// The live window's hash manifest names what is served.
	liveSums, err := hashfile.Decode(fetch(t, base+"live/audio/"+hashfile.Name))
	if err != nil || len(liveSums) != LiveWindow+1 {
		t.Fatalf("live hash manifest: %d entries, %v", len(liveSums), err)
	}
	for name, sum := range liveSums {
		if got := fetch(t, base+"live/audio/"+name); hashfile.Sum(got) != fmt.Sprintf("%x", sum) {
			t.Fatalf("live %s: bytes do not match the manifest", name)
		}
	}
	o := newDemo(t)
	reps, _ := o.dashReps()
	for _, r := range reps {
		newest := o.newest(r.rd, now)
		for n := newest - LiveWindow + 1; n <= newest+1; n++ {
			tm := o.liveTime(r, n)
			if got, ok := o.liveSegmentAt(r, tm); !ok || got != n {
				t.Fatalf("%s: time %d maps to segment %d, want %d", r.id, tm, got, n)
			}
			url := fmt.Sprintf("%slive/%s/%d.m4s", base, r.id, tm)
			if n > newest {
				if code := status(t, url, ""); code != http.StatusNotFound {
					t.Fatalf("a segment past the live edge: HTTP %d", code)
				}
				continue
			}
			if !strings.Contains(live, fmt.Sprintf(`<S t="%d"`, tm)) {
				t.Fatalf("%s: segment at %d is not in the live MPD", r.id, tm)
			}
			fetch(t, url)
		}
	}
}

func atoi(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }

func status(t *testing.T, url, rng string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func get(t *testing.T, url, rng string, want int) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Range", rng)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: HTTP %d", url, rng, resp.StatusCode)
	}
	b, _ := io.ReadAll(resp.Body)
	return b
}
