package democdn

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/peercdn/peercdn/hashfile"
)

// The DASH view serves the demo stream as DASH, in the addressing modes
// real MPDs use, from the same files as the HLS views:
//
//	/dash/live/manifest.mpd        dynamic, SegmentTemplate with a SegmentTimeline ($Time$)
//	/dash/vod/manifest.mpd         static, SegmentTemplate with $Number$
//	/dash/vod-ranges/manifest.mpd  static, SegmentBase: byte ranges of one file per
//	                               representation, indexed by its sidx
//	/dash/vod-list/manifest.mpd    static, SegmentList of byte ranges of the same files
//	/dash/vod-ranges/master.m3u8   the same files as HLS with EXT-X-BYTERANGE (audio as an
//	                               EXT-X-MEDIA group)
//
// Audio and video are separate representations (demux.go): video per
// rendition ("v360p"), audio from the first ("audio").

type dashView struct {
	once sync.Once
	reps []*dashRep
	err  error
}

// dashRep is one DASH representation.
type dashRep struct {
	id    string
	rd    *rendition
	track track
	init  []byte
	frags []fragment // one per VOD segment, decode times as in the VOD files
	// The single file of the byte-range views: init, sidx, fragments. The
	// template views serve the same bytes (fragBytes).
	file                   []byte
	initSum                string   // SHA-256 of init
	sums                   []string // of each fragment, as served in every view
	initEnd, indexEnd      int      // last byte of the init segment, of the sidx
	fragStart              []int    // each fragment's first byte in file
	loopTicks              uint64
	contentType, mime, cod string
}

func (o *Origin) dashReps() ([]*dashRep, error) {
	v := &o.dash
	v.once.Do(func() { v.reps, v.err = o.buildDASH() })
	return v.reps, v.err
}

func (o *Origin) buildDASH() ([]*dashRep, error) {
	var reps []*dashRep
	for i, name := range o.order {
		rd := o.renditions[name]
		init, err := fs.ReadFile(o.fsys, name+"/init.mp4")
		if err != nil {
			return nil, err
		}
		ts, err := tracks(init)
		if err != nil {
			return nil, fmt.Errorf("dash: %s/init.mp4: %w", name, err)
		}
		for _, t := range ts {
			var r *dashRep
			switch {
			case t.kind == "vide":
				r = &dashRep{id: "v" + name, contentType: "video", mime: "video/mp4", cod: codec(rd.codecs, "avc1", "hvc1", "hev1", "av01", "vp09")}
			case t.kind == "soun" && i == 0:
				r = &dashRep{id: "audio", contentType: "audio", mime: "audio/mp4", cod: codec(rd.codecs, "mp4a", "opus", "ac-3", "ec-3")}
			default:
				continue
			}
			r.rd, r.track = rd, t
			if r.init, err = initForTrack(init, t.id); err != nil {
				return nil, fmt.Errorf("dash: %s: %w", r.id, err)
			}
			for _, s := range rd.segments {
				b, err := fs.ReadFile(o.fsys, name+"/"+s)
				if err != nil {
					return nil, err
				}
				f, err := fragmentForTrack(b, t)
				if err != nil {
					return nil, fmt.Errorf("dash: %s/%s: %w", name, s, err)
				}
				r.frags = append(r.frags, f)
			}
			r.loopTicks = uint64(rd.period) * uint64(t.timescale)
			idx := sidx(t, r.frags)
			r.file = append(append([]byte(nil), r.init...), idx...)
			r.initEnd, r.indexEnd = len(r.init)-1, len(r.file)-1
			for _, f := range r.frags {
				r.fragStart = append(r.fragStart, len(r.file))
				r.file = append(r.file, f.moof...)
				r.file = append(r.file, f.mdat...)
			}
			// The files are static: hash them once, not per manifest request.
			r.initSum = hashfile.Sum(r.init)
			for i := range r.frags {
				r.sums = append(r.sums, hashfile.Sum(r.fragBytes(i)))
			}
			reps = append(reps, r)
		}
	}
	return reps, nil
}

// codec picks the codec of a CODECS attribute that starts with one of the
// prefixes.
func codec(codecs string, prefixes ...string) string {
	for _, c := range strings.Split(codecs, ",") {
		c = strings.TrimSpace(c)
		for _, p := range prefixes {
			if strings.HasPrefix(c, p) {
				return c
			}
		}
	}
	return ""
}

// fragRange is fragment i's bytes in the single file.
func (r *dashRep) fragRange(i int) (int, int) {
	return r.fragStart[i], r.fragStart[i] + len(r.frags[i].moof) + len(r.frags[i].mdat) - 1
}

// fragBytes is fragment i as stored, moof then mdat: shared, read only.
func (r *dashRep) fragBytes(i int) []byte {
	a, b := r.fragRange(i)
	return r.file[a : b+1]
}

// liveTime is live segment n's decode time; liveSegmentAt is its inverse.
func (o *Origin) liveTime(r *dashRep, n uint64) uint64 {
	count := uint64(len(r.frags))
	return r.frags[n%count].decodeTime + (n/count-o.epochLoops(r.rd))*r.loopTicks
}

func (o *Origin) liveSegmentAt(r *dashRep, t uint64) (uint64, bool) {
	if r.loopTicks == 0 {
		return 0, false
	}
	loops, rem := t/r.loopTicks, t%r.loopTicks
	for i, f := range r.frags {
		if f.decodeTime == rem {
			return (loops+o.epochLoops(r.rd))*uint64(len(r.frags)) + uint64(i), true
		}
	}
	return 0, false
}

func (o *Origin) serveDASH(w http.ResponseWriter, r *http.Request, rest string) {
	reps, err := o.dashReps()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	view, file, _ := strings.Cut(rest, "/")
	var rep *dashRep
	if id, name, ok := strings.Cut(file, "/"); ok {
		for _, x := range reps {
			if x.id == id {
				rep = x
			}
		}
		file = name
		if rep == nil {
			http.NotFound(w, r)
			return
		}
	}
	now := o.now()
	serve := func(b []byte, typ, cache string) {
		w.Header().Set("Content-Type", typ)
		w.Header().Set("Cache-Control", cache)
		http.ServeContent(w, r, path.Base(file), time.Time{}, bytes.NewReader(b))
	}
	switch {
	case file == "manifest.mpd" && rep == nil:
		mpd, ok := o.mpd(view, reps, now)
		if !ok {
			http.NotFound(w, r)
			return
		}
		cache := "max-age=1"
		if view == "live" {
			cache = "no-cache"
		}
		serve(mpd, "application/dash+xml", cache)
	case file == hashfile.Name && o.NoHashManifest:
		http.NotFound(w, r)
	case file == hashfile.Name:
		m, ok := o.dashHashes(view, rep, reps, now)
		if !ok {
			http.NotFound(w, r)
			return
		}
		b, err := m.Encode()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		serve(b, "application/json", "max-age=1")
	case rep != nil && file == "init.mp4" && (view == "vod" || view == "live"):
		serve(rep.init, "video/mp4", "max-age=86400")
	case rep != nil && view == "vod" && strings.HasSuffix(file, ".m4s"):
		n, err := strconv.Atoi(strings.TrimSuffix(file, ".m4s"))
		if err != nil || n < 0 || n >= len(rep.frags) {
			http.NotFound(w, r)
			return
		}
		serve(rep.fragBytes(n), "video/iso.segment", "max-age=86400")
	case rep != nil && view == "live" && strings.HasSuffix(file, ".m4s"):
		t, err := strconv.ParseUint(strings.TrimSuffix(file, ".m4s"), 10, 64)
		n, ok := o.liveSegmentAt(rep, t)
		if err != nil || !ok || n > o.newest(rep.rd, now) {
			http.NotFound(w, r) // not made yet, or no segment starts there
			return
		}
		b, err := o.dashLiveSegment(rep, n)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		serve(b, "video/iso.segment", "max-age=86400")
	case rep == nil && view == "vod-ranges" && strings.HasSuffix(file, ".m3u8"):
		b, ok := rangesPlaylist(strings.TrimSuffix(file, ".m3u8"), reps)
		if !ok {
			http.NotFound(w, r)
			return
		}
		serve(b, "application/vnd.apple.mpegurl", "max-age=1")
	case rep == nil && view == "vod-ranges" && strings.HasSuffix(file, ".mp4"):
		for _, x := range reps {
			if x.id+".mp4" == file {
				serve(x.file, "video/mp4", "max-age=86400") // ServeContent answers Range with 206
				return
			}
		}
		http.NotFound(w, r)
	default:
		http.NotFound(w, r)
	}
}

// dashLiveSegment is live segment n of r: the looped VOD fragment with its
// decode time moved forward.
func (o *Origin) dashLiveSegment(r *dashRep, n uint64) ([]byte, error) {
	count := uint64(len(r.frags))
	loops := n/count - o.epochLoops(r.rd)
	return shiftDecodeTime(r.fragBytes(int(n%count)), map[uint32]uint32{r.track.id: r.track.timescale}, loops*uint64(r.rd.period)) // copies
}

// dashHashes is the hash manifest of a DASH view's folder: a
// representation's folder in the template views (init segment included:
// players load it through peers too), the single files' byte ranges in
// vod-ranges.
func (o *Origin) dashHashes(view string, rep *dashRep, reps []*dashRep, now time.Time) (*hashfile.Manifest, bool) {
	m := &hashfile.Manifest{SHA256: map[string]string{}}
	switch {
	case view == "vod" && rep != nil:
		m.SHA256["init.mp4"] = rep.initSum
		for i, sum := range rep.sums {
			m.SHA256[strconv.Itoa(i)+".m4s"] = sum
		}
	case view == "live" && rep != nil:
		m.SHA256["init.mp4"] = rep.initSum
		newest := o.newest(rep.rd, now)
		for n := newest - LiveWindow + 1; n <= newest; n++ {
			sum, err := o.liveSum("dash/"+rep.id+"/"+strconv.FormatUint(n, 10), func() ([]byte, error) { return o.dashLiveSegment(rep, n) })
			if err != nil {
				return nil, false
			}
			m.SHA256[strconv.FormatUint(o.liveTime(rep, n), 10)+".m4s"] = sum
		}
	case view == "vod-ranges" && rep == nil:
		for _, r := range reps {
			name := r.id + ".mp4"
			m.SHA256[hashfile.RangeName(name, 0, int64(r.initEnd))] = r.initSum
			for i, sum := range r.sums {
				a, b := r.fragRange(i)
				m.SHA256[hashfile.RangeName(name, int64(a), int64(b))] = sum
			}
		}
	default:
		return nil, false
	}
	return m, true
}

// mpd writes view's MPD.
func (o *Origin) mpd(view string, reps []*dashRep, now time.Time) ([]byte, bool) {
	if len(reps) == 0 {
		return nil, false
	}
	rd0 := reps[0].rd
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	dur := fmt.Sprintf("PT%gS", rd0.period)
	switch view {
	case "live":
		n0 := o.epochLoops(rd0) * uint64(len(rd0.segments))
		ast := time.Unix(0, int64(n0)*int64(rd0.step)).UTC()
		fmt.Fprintf(&b, `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="dynamic" availabilityStartTime="%s" publishTime="%s" minimumUpdatePeriod="PT%gS" timeShiftBufferDepth="PT%gS" suggestedPresentationDelay="PT%gS" minBufferTime="PT%gS">`+"\n",
			ast.Format(time.RFC3339), now.UTC().Format(time.RFC3339), rd0.step.Seconds(), float64(LiveWindow)*rd0.step.Seconds(),
			3*rd0.step.Seconds(), rd0.step.Seconds())
	case "vod", "vod-ranges", "vod-list":
		profile := "urn:mpeg:dash:profile:isoff-live:2011"
		if view != "vod" {
			profile = "urn:mpeg:dash:profile:isoff-on-demand:2011"
		}
		fmt.Fprintf(&b, `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="%s" type="static" mediaPresentationDuration="%s" minBufferTime="PT%gS">`+"\n",
			profile, dur, rd0.step.Seconds())
	default:
		return nil, false
	}
	b.WriteString(`<Period id="0" start="PT0S">` + "\n")
	for _, kind := range []string{"video", "audio"} {
		fmt.Fprintf(&b, `<AdaptationSet contentType="%s" segmentAlignment="true" startWithSAP="1">`+"\n", kind)
		for _, r := range reps {
			if r.contentType != kind {
				continue
			}
			ts := r.track.timescale
			fmt.Fprintf(&b, `<Representation id="%s" mimeType="%s" codecs="%s" bandwidth="%d"`, r.id, r.mime, r.cod, r.rd.bandwidth)
			if kind == "video" {
				if wd, ht, ok := strings.Cut(r.rd.resolution, "x"); ok {
					fmt.Fprintf(&b, ` width="%s" height="%s"`, wd, ht)
				}
			} else {
				b.WriteString(` audioSamplingRate="` + strconv.FormatUint(uint64(ts), 10) + `"`)
			}
			b.WriteString(">\n")
			switch view {
			case "live":
				newest := o.newest(r.rd, now)
				fmt.Fprintf(&b, `<SegmentTemplate timescale="%d" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Time$.m4s"><SegmentTimeline>`+"\n", ts)
				for n := newest - LiveWindow + 1; n <= newest; n++ {
					fmt.Fprintf(&b, `<S t="%d" d="%d"/>`+"\n", o.liveTime(r, n), r.frags[n%uint64(len(r.frags))].duration)
				}
				b.WriteString("</SegmentTimeline></SegmentTemplate>\n")
			case "vod":
				fmt.Fprintf(&b, `<SegmentTemplate timescale="%d" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s" startNumber="0" duration="%d"/>`+"\n",
					ts, uint64(r.rd.step.Seconds()*float64(ts)))
			case "vod-ranges":
				fmt.Fprintf(&b, `<BaseURL>%s.mp4</BaseURL><SegmentBase timescale="%d" indexRange="%d-%d"><Initialization range="0-%d"/></SegmentBase>`+"\n",
					r.id, ts, r.initEnd+1, r.indexEnd, r.initEnd)
			case "vod-list":
				fmt.Fprintf(&b, `<BaseURL>../vod-ranges/%s.mp4</BaseURL><SegmentList timescale="%d" duration="%d"><Initialization range="0-%d"/>`+"\n",
					r.id, ts, uint64(r.rd.step.Seconds()*float64(ts)), r.initEnd)
				for i := range r.frags {
					a, z := r.fragRange(i)
					fmt.Fprintf(&b, `<SegmentURL mediaRange="%d-%d"/>`+"\n", a, z)
				}
				b.WriteString("</SegmentList>\n")
			}
			b.WriteString("</Representation>\n")
		}
		b.WriteString("</AdaptationSet>\n")
	}
	b.WriteString("</Period>\n")
	if view == "live" {
		// The clock the segment times count from: this server's, with no
		// extra request (dash.js otherwise asks a public time server).
		fmt.Fprintf(&b, `<UTCTiming schemeIdUri="urn:mpeg:dash:utc:direct:2014" value="%s"/>`+"\n", now.UTC().Format("2006-01-02T15:04:05.000Z"))
	}
	b.WriteString("</MPD>\n")
	return b.Bytes(), true
}

// rangesPlaylist is the byte-range view as HLS: the master playlist
// ("master"), or a representation's media playlist of EXT-X-BYTERANGE
// segments of its single file.
func rangesPlaylist(name string, reps []*dashRep) ([]byte, bool) {
	var b bytes.Buffer
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n")
	if name == "master" {
		audio := ""
		for _, r := range reps {
			if r.contentType == "audio" {
				audio = r.cod
				fmt.Fprintf(&b, "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,URI=\"%s.m3u8\"\n", r.id)
			}
		}
		for _, r := range reps {
			if r.contentType != "video" {
				continue
			}
			codecs, group := r.cod, ""
			if audio != "" {
				codecs, group = r.cod+","+audio, ",AUDIO=\"audio\""
			}
			fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d,RESOLUTION=%s,CODECS=\"%s\"%s\n%s.m3u8\n", r.rd.bandwidth, r.rd.resolution, codecs, group, r.id)
		}
		return b.Bytes(), true
	}
	for _, r := range reps {
		if r.id != name {
			continue
		}
		fmt.Fprintf(&b, "#EXT-X-TARGETDURATION:%d\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MEDIA-SEQUENCE:0\n", r.rd.target)
		fmt.Fprintf(&b, "#EXT-X-MAP:URI=\"%s.mp4\",BYTERANGE=\"%d@0\"\n", r.id, r.initEnd+1)
		for i, f := range r.frags {
			first, last := r.fragRange(i)
			fmt.Fprintf(&b, "#EXTINF:%.5f,\n#EXT-X-BYTERANGE:%d@%d\n%s.mp4\n", float64(f.duration)/float64(r.track.timescale), last-first+1, first, r.id)
		}
		b.WriteString("#EXT-X-ENDLIST\n")
		return b.Bytes(), true
	}
	return nil, false
}
