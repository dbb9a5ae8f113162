// Package democdn is the demo CDN: it serves a VOD HLS stream as is,
// and the same stream as a live sliding window that advances with wall time,
// counting every byte it sends so that CDN bytes are measured where they are
// served.
package democdn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafov/m3u8"

	"github.com/peercdn/peercdn/examples"
	"github.com/peercdn/peercdn/hashfile"
)

// LiveWindow is how many segments the live playlist lists.
const LiveWindow = 6

// Origin serves /vod/... and /live/... from a stream folder holding
// master.m3u8 and one folder per rendition (index.m3u8, init.mp4, segments).
type Origin struct {
	// NoHashManifest serves no peercdn-hashes.json (404), as most CDNs:
	// peers' bytes are then checked against the tracker's notary only.
	NoHashManifest bool
	// Digests sends each media segment's SHA-256 in a Repr-Digest header
	// (RFC 9530), as some CDNs and object stores publish one: the
	// tracker's notary then reads it with a HEAD instead of fetching a
	// copy.
	Digests bool
	// Latency delays every response (before its headers), and
	// BytesPerSecond, when positive, paces every response body: a CDN
	// edge farther away or slower than loopback, for benchmarks.
	Latency        time.Duration
	BytesPerSecond int

	fsys       fs.FS
	renditions map[string]*rendition
	order      []string // rendition names, as the master playlist lists them
	now        func() time.Time
	dash       dashView

	hmu    sync.Mutex
	hashes map[string]string // live segment hashes, by rendition/seq (liveSum)

	bytes    atomic.Int64 // body bytes sent
	segBytes atomic.Int64 // of which media segments
	requests atomic.Int64
}

type rendition struct {
	// From the master playlist: for the DASH view's MPD.
	bandwidth  uint32
	resolution string // "640x360"
	codecs     string // "avc1.4d401e,mp4a.40.2"

	segments  []string // file names, in order
	durations []float64
	target    int     // EXT-X-TARGETDURATION
	period    float64 // sum of durations: one loop of the live view
	step      time.Duration
	// timescales of the init segment's tracks, to shift decode times.
	timescales map[uint32]uint32
}

// Sample is the origin of the built-in sample stream (examples.Stream),
// the demo's and the tests'.
func Sample() (*Origin, error) {
	st, err := fs.Sub(examples.Stream, "stream")
	if err != nil {
		return nil, err
	}
	return New(st)
}

// New reads the stream's playlists from fsys.
func New(fsys fs.FS) (*Origin, error) {
	o := &Origin{fsys: fsys, renditions: map[string]*rendition{}, now: time.Now, hashes: map[string]string{}}
	master, err := fs.ReadFile(fsys, "master.m3u8")
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	pl, _, err := m3u8.DecodeFrom(bytes.NewReader(master), true)
	if err != nil {
		return nil, fmt.Errorf("origin: master.m3u8: %w", err)
	}
	mp, ok := pl.(*m3u8.MasterPlaylist)
	if !ok {
		return nil, fmt.Errorf("origin: master.m3u8 is not a master playlist")
	}
	for _, v := range mp.Variants {
		name := path.Dir(v.URI)
		b, err := fs.ReadFile(fsys, v.URI)
		if err != nil {
			return nil, fmt.Errorf("origin: %w", err)
		}
		p, _, err := m3u8.DecodeFrom(bytes.NewReader(b), true)
		if err != nil {
			return nil, fmt.Errorf("origin: %s: %w", v.URI, err)
		}
		media, ok := p.(*m3u8.MediaPlaylist)
		if !ok {
			return nil, fmt.Errorf("origin: %s is not a media playlist", v.URI)
		}
		r := &rendition{target: int(media.TargetDuration), bandwidth: v.Bandwidth, resolution: v.Resolution, codecs: v.Codecs}
		for _, s := range media.Segments {
			if s == nil {
				continue
			}
			r.segments = append(r.segments, s.URI)
			r.durations = append(r.durations, s.Duration)
			r.period += s.Duration
		}
		if len(r.segments) < LiveWindow {
			return nil, fmt.Errorf("origin: %s has %d segments, the live view needs %d", v.URI, len(r.segments), LiveWindow)
		}
		// The live view assumes equal segment durations, as packagers make
		// them for live; it uses the target duration as the step.
		r.step = time.Duration(r.target) * time.Second
		if r.period != float64(int(r.period)) {
			return nil, fmt.Errorf("origin: %s lasts %.3f s: the live loop needs whole seconds", v.URI, r.period)
		}
		init, err := fs.ReadFile(fsys, path.Join(name, "init.mp4"))
		if err != nil {
			return nil, fmt.Errorf("origin: %w", err)
		}
		if r.timescales, err = timescales(init); err != nil {
			return nil, fmt.Errorf("origin: %s/init.mp4: %w", name, err)
		}
		o.renditions[name] = r
		o.order = append(o.order, name)
	}
	return o, nil
}

// Stats are the origin's own counters.
type Stats struct {
	Bytes        int64 `json:"bytes"`
	SegmentBytes int64 `json:"segmentBytes"`
	Requests     int64 `json:"requests"`
}

// Stats returns the counters.
func (o *Origin) Stats() Stats {
	return Stats{Bytes: o.bytes.Load(), SegmentBytes: o.segBytes.Load(), Requests: o.requests.Load()}
}

// ServeHTTP serves paths relative to the origin's mount point:
// /vod/master.m3u8, /live/master.m3u8, /{vod,live}/<rendition>/..., the
// same stream as DASH under /dash/ (dash.go), and /stats.json.
func (o *Origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Players on other origins fetch segments with Range; let them.
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Headers", "Range")
	h.Set("Access-Control-Expose-Headers", "Content-Length, Content-Range, Repr-Digest")
	// Pages may read the resource timing of cross-origin loads (cache hits
	// show as transferSize 0): CDNs commonly allow it.
	h.Set("Timing-Allow-Origin", "*")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	if p == "stats.json" {
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(o.Stats())
		return
	}
	view, rest, _ := strings.Cut(p, "/")
	if view != "vod" && view != "live" && view != "dash" {
		http.NotFound(w, r)
		return
	}
	o.requests.Add(1)
	if o.Latency > 0 {
		select {
		case <-time.After(o.Latency):
		case <-r.Context().Done():
			return
		}
	}
	var out http.ResponseWriter = w
	if o.BytesPerSecond > 0 {
		out = &pacedWriter{ResponseWriter: w, rate: o.BytesPerSecond, done: r.Context().Done()}
	}
	cw := &countingWriter{ResponseWriter: out, o: o, segment: strings.HasSuffix(rest, ".m4s") ||
		view == "dash" && strings.HasSuffix(rest, ".mp4") && path.Base(rest) != "init.mp4"}
	switch view {
	case "dash":
		o.serveDASH(cw, r, rest)
		return
	case "live":
		o.serveLive(cw, r, rest)
		return
	}
	o.serveFile(cw, r, rest, rest)
}

func (o *Origin) serveFile(w http.ResponseWriter, r *http.Request, name, as string) {
	b, err := fs.ReadFile(o.fsys, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	switch {
	case strings.HasSuffix(as, ".m3u8"):
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		w.Header().Set("Cache-Control", "max-age=1")
	case strings.HasSuffix(as, ".mp4"):
		w.Header().Set("Content-Type", "video/mp4")
		w.Header().Set("Cache-Control", "max-age=86400")
	case strings.HasSuffix(as, ".m4s"):
		w.Header().Set("Content-Type", "video/iso.segment")
		w.Header().Set("Cache-Control", "max-age=86400")
		o.digest(w, b)
	}
	http.ServeContent(w, r, path.Base(as), time.Time{}, bytes.NewReader(b))
}

// serveLive maps the live view onto the VOD files: live segment n is VOD
// segment n mod len with its decode times moved forward by the loops since
// liveEpoch, so the title loops in one continuous timeline.
func (o *Origin) serveLive(w http.ResponseWriter, r *http.Request, rest string) {
	if rest == "master.m3u8" {
		o.serveFile(w, r, rest, rest)
		return
	}
	name, file, ok := strings.Cut(rest, "/")
	rd := o.renditions[name]
	if !ok || rd == nil {
		http.NotFound(w, r)
		return
	}
	switch {
	case file == "index.m3u8":
		b := o.livePlaylist(rd, o.now())
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "index.m3u8", time.Time{}, bytes.NewReader(b))
	case file == "init.mp4":
		o.serveFile(w, r, name+"/init.mp4", file)
	case file == hashfile.Name && o.NoHashManifest:
		http.NotFound(w, r)
	case file == hashfile.Name:
		b, err := o.liveHashes(rd, name, o.now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=1")
		http.ServeContent(w, r, file, time.Time{}, bytes.NewReader(b))
	case strings.HasSuffix(file, ".m4s"):
		n, err := strconv.ParseUint(strings.TrimSuffix(file, ".m4s"), 10, 64)
		if err != nil || n > o.newest(rd, o.now()) {
			http.NotFound(w, r) // not made yet: a real live origin 404s too
			return
		}
		o.serveLiveSegment(w, r, rd, name, n, file)
	default:
		http.NotFound(w, r)
	}
}

// liveSegment is live segment n's bytes: the looped VOD segment with its
// decode times moved forward.
func (o *Origin) liveSegment(rd *rendition, name string, n uint64) ([]byte, error) {
	count := uint64(len(rd.segments))
	b, err := fs.ReadFile(o.fsys, name+"/"+rd.segments[n%count])
	if err != nil {
		return nil, err
	}
	loops := n/count - o.epochLoops(rd)
	return shiftDecodeTime(b, rd.timescales, loops*uint64(rd.period))
}

// liveHashes is the live window's hash manifest, as a packager that
// publishes one would write it.
func (o *Origin) liveHashes(rd *rendition, name string, now time.Time) ([]byte, error) {
	newest := o.newest(rd, now)
	m := &hashfile.Manifest{SHA256: map[string]string{}}
	for s := newest - LiveWindow + 1; s <= newest; s++ {
		sum, err := o.liveSum(name+"/"+strconv.FormatUint(s, 10), func() ([]byte, error) { return o.liveSegment(rd, name, s) })
		if err != nil {
			return nil, err
		}
		m.SHA256[strconv.FormatUint(s, 10)+".m4s"] = sum
	}
	return m.Encode()
}

// liveSum is the hash of the live segment named key, made by segment: the
// live window's manifest is asked for every second by every viewer, and
// hashes each segment once.
func (o *Origin) liveSum(key string, segment func() ([]byte, error)) (string, error) {
	o.hmu.Lock()
	sum, ok := o.hashes[key]
	o.hmu.Unlock()
	if ok {
		return sum, nil
	}
	b, err := segment()
	if err != nil {
		return "", err
	}
	sum = hashfile.Sum(b)
	o.hmu.Lock()
	if len(o.hashes) > 256 {
		clear(o.hashes)
	}
	o.hashes[key] = sum
	o.hmu.Unlock()
	return sum, nil
}

func (o *Origin) serveLiveSegment(w http.ResponseWriter, r *http.Request, rd *rendition, name string, n uint64, as string) {
	b, err := o.liveSegment(rd, name, n)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "video/iso.segment")
	w.Header().Set("Cache-Control", "max-age=86400")
	o.digest(w, b)
	http.ServeContent(w, r, as, time.Time{}, bytes.NewReader(b))
}

// digest publishes b's SHA-256 in a Repr-Digest header (Digests).
func (o *Origin) digest(w http.ResponseWriter, b []byte) {
	if o.Digests {
		sum := sha256.Sum256(b)
		w.Header().Set("Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
	}
}

// newest is the live edge: the last segment whose time has fully passed.
// Sequence numbers count steps since the Unix epoch, so every origin node
// serves the same live view at the same time.
func (o *Origin) newest(rd *rendition, now time.Time) uint64 {
	return uint64(now.UnixNano()/int64(rd.step)) - 1
}

// liveEpoch is when the demo's live loop is taken to have started: decode
// times count from here, so they stay small.
var liveEpoch = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func (o *Origin) epochLoops(rd *rendition) uint64 {
	return uint64(liveEpoch.UnixNano()/int64(rd.step)) / uint64(len(rd.segments))
}

func (o *Origin) livePlaylist(rd *rendition, now time.Time) []byte {
	newest := o.newest(rd, now)
	first := newest - LiveWindow + 1
	var b bytes.Buffer
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:%d\n", rd.target)
	// No discontinuities: decode times continue across loops. (An earlier
	// version counted a discontinuity per loop since 1970; hls.js walks its
	// per-discontinuity array from 0 to the discontinuity sequence on every
	// playlist load, 0.8 s of main-thread time at 30 million, which stalled
	// every player on the page.)
	fmt.Fprintf(&b, "#EXT-X-MEDIA-SEQUENCE:%d\n", first)
	b.WriteString("#EXT-X-MAP:URI=\"init.mp4\"\n")
	for s := first; s <= newest; s++ {
		fmt.Fprintf(&b, "#EXTINF:%.3f,\n%d.m4s\n", rd.step.Seconds(), s)
	}
	return b.Bytes()
}

// countingWriter counts the body bytes actually written.
type countingWriter struct {
	http.ResponseWriter
	o       *Origin
	segment bool
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.o.bytes.Add(int64(n))
	if c.segment {
		c.o.segBytes.Add(int64(n))
	}
	return n, err
}

var _ io.Writer = (*countingWriter)(nil)

// pacedWriter sends a body at rate bytes a second, in 50 ms slices.
type pacedWriter struct {
	http.ResponseWriter
	rate  int
	done  <-chan struct{}
	start time.Time
	sent  int
}

func (p *pacedWriter) Write(b []byte) (int, error) {
	if p.start.IsZero() {
		p.start = time.Now()
	}
	n := 0
	for len(b) > 0 {
		slice := min(len(b), max(1, p.rate/20))
		m, err := p.ResponseWriter.Write(b[:slice])
		n += m
		p.sent += m
		if err != nil {
			return n, err
		}
		b = b[slice:]
		if f, ok := p.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		due := p.start.Add(time.Duration(float64(p.sent) / float64(p.rate) * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			select {
			case <-time.After(wait):
			case <-p.done:
				return n, context.Canceled
			}
		}
	}
	return n, nil
}
