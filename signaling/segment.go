package signaling

import (
	"errors"
	"hash/fnv"
	"strconv"
	"strings"
)

// Segment identity. A segment is named in its swarm by a 64-bit number
// every viewer derives alike from where the CDN serves it: the FNV-1a hash
// of the URL's path (no host, no query: tokenized and multi-CDN URLs meet)
// and, for a byte range of a larger file (DASH SegmentBase and SegmentList,
// HLS byte ranges), the range. The tracker derives it too, so that a viewer
// cannot have the notary vouch for one segment's bytes under another's
// number.

// ByteRange is an inclusive range of bytes in a file, as in an HTTP Range
// header: 0 <= First <= Last.
type ByteRange struct {
	First, Last int64
}

// MaxRangeLen bounds a range's text form.
const MaxRangeLen = 41 // two 20-digit numbers and a dash

// Len is the number of bytes in r.
func (r ByteRange) Len() int64 { return r.Last - r.First + 1 }

// String is the range's wire form, "first-last".
func (r ByteRange) String() string {
	return strconv.FormatInt(r.First, 10) + "-" + strconv.FormatInt(r.Last, 10)
}

// Header is the HTTP Range header's value for r.
func (r ByteRange) Header() string { return "bytes=" + r.String() }

// ErrBadRange is returned for a range that is not "first-last" with
// 0 <= first <= last.
var ErrBadRange = errors.New("range must be first-last, 0 <= first <= last")

// ParseRange reads "first-last" (the wire form) or "bytes=first-last" (an
// HTTP Range header with one closed range). The empty string is no range:
// ok false, no error.
func ParseRange(s string) (r ByteRange, ok bool, err error) {
	if s == "" {
		return ByteRange{}, false, nil
	}
	s = strings.TrimPrefix(s, "bytes=")
	a, b, found := strings.Cut(s, "-")
	if !found || len(s) > MaxRangeLen {
		return ByteRange{}, false, ErrBadRange
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || first < 0 || last < first || a[0] == '+' || b[0] == '+' {
		return ByteRange{}, false, ErrBadRange
	}
	return ByteRange{First: first, Last: last}, true, nil
}

// ParseContentRange reads a 206 response's Content-Range, "bytes
// first-last/size"; size is -1 when the server says "*".
func ParseContentRange(h string) (r ByteRange, size int64, ok bool) {
	rest, prefixed := strings.CutPrefix(h, "bytes ")
	rng, total, _ := strings.Cut(rest, "/")
	r, ranged, err := ParseRange(rng)
	if !prefixed || !ranged || err != nil {
		return ByteRange{}, 0, false
	}
	if total == "*" {
		return r, -1, true
	}
	n, err := strconv.ParseInt(total, 10, 64)
	if err != nil || n <= r.Last {
		return ByteRange{}, 0, false
	}
	return r, n, true
}

// MaxRangeSkip bounds how far into a file a reader (the agent, the
// notary) reads to reach a byte range, from a CDN that answers a Range
// request with the whole file.
const MaxRangeSkip = 64 << 20

// SegmentID is the number naming the segment at rawURL (and, when ranged,
// its bytes rng) in its swarm.
func SegmentID(rawURL string, rng *ByteRange) uint64 {
	h := fnv.New64a()
	h.Write([]byte(ContentID(rawURL)))
	if rng != nil {
		h.Write([]byte("#" + rng.String()))
	}
	return h.Sum64()
}

// Source is where the CDN serves a segment: a URL and, for a byte-range
// segment, its bytes there.
type Source struct {
	URL   string
	Range *ByteRange // nil: the whole response
}

// ID is the segment's number in its swarm.
func (s Source) ID() uint64 { return SegmentID(s.URL, s.Range) }

// RangeString is the range's wire form, or "" for a whole response.
func (s Source) RangeString() string {
	if s.Range == nil {
		return ""
	}
	return s.Range.String()
}
