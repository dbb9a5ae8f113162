package signaling

import (
	"hash/fnv"
	"testing"
)

// TestSegmentID: a whole segment's id is the FNV-1a of its URL's path (as
// agents named segments before byte ranges, so swarms of mixed versions
// meet); hosts and queries do not matter; a range makes another segment.
func TestSegmentID(t *testing.T) {
	h := fnv.New64a()
	h.Write([]byte("/live/720p/9.m4s"))
	if got := SegmentID("https://cdn-a.example/live/720p/9.m4s?token=1", nil); got != h.Sum64() {
		t.Fatalf("id %d, want the path's FNV-1a %d", got, h.Sum64())
	}
	if SegmentID("https://cdn-b.example/live/720p/9.m4s", nil) != h.Sum64() {
		t.Fatal("another CDN host names another segment")
	}
	a, b := ByteRange{0, 99}, ByteRange{100, 199}
	u := "https://cdn.example/vod/v.mp4"
	if SegmentID(u, &a) == SegmentID(u, &b) || SegmentID(u, &a) == SegmentID(u, nil) {
		t.Fatal("ranges of one file share an id")
	}
	if (Source{URL: u, Range: &a}).ID() != SegmentID(u, &a) {
		t.Fatal("Source.ID differs from SegmentID")
	}
}

func TestParseRange(t *testing.T) {
	for in, want := range map[string]ByteRange{"0-99": {0, 99}, "bytes=5-5": {5, 5}} {
		if got, ok, err := ParseRange(in); err != nil || !ok || got != want {
			t.Fatalf("%q: %v %v %v", in, got, ok, err)
		}
	}
	if _, ok, err := ParseRange(""); ok || err != nil {
		t.Fatal("empty: want no range, no error")
	}
	for _, in := range []string{"5-4", "-5", "5-", "a-b", "+1-2", "1-+2", "bytes=0-1,3-4", "99999999999999999999-1"} {
		if _, _, err := ParseRange(in); err == nil {
			t.Fatalf("%q accepted", in)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	for h, want := range map[string]struct {
		r    ByteRange
		size int64
	}{"bytes 0-99/1000": {ByteRange{0, 99}, 1000}, "bytes 5-9/*": {ByteRange{5, 9}, -1}} {
		if r, size, ok := ParseContentRange(h); !ok || r != want.r || size != want.size {
			t.Fatalf("%q: %v %d %v", h, r, size, ok)
		}
	}
	for _, h := range []string{"", "0-99/1000", "bytes 0-99/99", "bytes 0-99/x", "bytes */1000", "items 0-1/2"} {
		if _, _, ok := ParseContentRange(h); ok {
			t.Fatalf("%q accepted", h)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	f.Add("0-99")
	f.Add("bytes=1-2")
	f.Fuzz(func(t *testing.T, s string) {
		r, ok, err := ParseRange(s)
		if err != nil || !ok {
			return
		}
		if r.First < 0 || r.Last < r.First {
			t.Fatalf("%q parsed to %v", s, r)
		}
		if again, _, err := ParseRange(r.String()); err != nil || again != r {
			t.Fatalf("%q: %v does not round-trip", s, r)
		}
	})
}
