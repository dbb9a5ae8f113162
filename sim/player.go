// Package sim plays an HLS stream the way a browser player would (playlist
// polling, a playback clock, a buffer target, stalls when the buffer runs
// dry), loading segments through an agent: the native load-test viewer.
package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/grafov/m3u8"

	"github.com/peercdn/peercdn/agent"
	"github.com/peercdn/peercdn/signaling"
)

// Player is one simulated viewer.
type Player struct {
	Agent  *agent.Agent
	HTTP   *http.Client // playlists and init segments; default http.DefaultClient
	Master string       // master playlist URL
	// ContentID is the site's content id (the browser's contentId),
	// or empty for the master playlist's path, as in the browser.
	ContentID string
	// Rendition picks the variant by index in the master playlist. Default 0.
	Rendition int
	// LiveSync is how many segments behind the live edge playback starts,
	// as hls.js's liveSyncDurationCount. Default 3.
	LiveSync int
	// BufferTarget stops fetching ahead (VOD) beyond this much buffer.
	// Default 30s.
	BufferTarget time.Duration
	// Check, if set, is given every segment handed to the player; false
	// counts it in Result.Corrupt.
	Check func(url string, data []byte) bool
}

// Result is what one viewer saw.
type Result struct {
	StartupMs int64   `json:"startupMs"` // start to first frame (first segment loaded)
	Stalls    int     `json:"stalls"`
	Corrupt   int     `json:"corrupt"` // segments that differed from the origin's (Check)
	StallMs   int64   `json:"stallMs"`
	Segments  int     `json:"segments"`
	Played    float64 `json:"playedSeconds"`
	Errors    int     `json:"errors"`
}

// clock is the playback clock: the playhead advances in wall time while
// there is buffer and stops (a stall) when there is none.
type clock struct {
	started    bool
	buffered   float64 // media seconds loaded
	pos        float64 // playhead, media seconds
	at         time.Time
	stalled    bool
	stallStart time.Time
	stalls     int
	stallTime  time.Duration
	onStall    func(time.Duration)
}

func (c *clock) advance(now time.Time) {
	if !c.started || c.stalled {
		c.at = now
		return
	}
	next := c.pos + now.Sub(c.at).Seconds()
	if next >= c.buffered {
		// Ran dry at the moment the playhead reached the buffer's end.
		c.stalled = true
		c.stallStart = c.at.Add(time.Duration((c.buffered - c.pos) * float64(time.Second)))
		next = c.buffered
	}
	c.pos, c.at = next, now
}

func (c *clock) add(now time.Time, seconds float64) {
	c.advance(now)
	c.buffered += seconds
	if !c.started {
		c.started, c.at = true, now
	}
	if c.stalled {
		d := now.Sub(c.stallStart)
		c.stalled = false
		c.stalls++
		c.stallTime += d
		if c.onStall != nil {
			c.onStall(d)
		}
	}
}

// level is the buffer ahead of the playhead.
func (c *clock) level(now time.Time) time.Duration {
	c.advance(now)
	return time.Duration((c.buffered - c.pos) * float64(time.Second))
}

// Run plays until ctx ends (or a VOD ends) and reports what the viewer saw.
func (p *Player) Run(ctx context.Context) (Result, error) {
	if p.HTTP == nil {
		p.HTTP = http.DefaultClient
	}
	if p.LiveSync == 0 {
		p.LiveSync = 3
	}
	if p.BufferTarget == 0 {
		p.BufferTarget = 30 * time.Second
	}
	start := time.Now()
	var res Result
	mediaURL, err := p.variant(ctx)
	if err != nil {
		return res, err
	}
	// Segments are named as the browser's agent names them (by URL path),
	// so native and browser viewers of a stream share swarms and segments.
	joined := map[signaling.Swarm]bool{}
	defer func() {
		for sw := range joined {
			p.Agent.Leave(sw)
		}
	}()
	name := func(segURL string) agent.Request {
		r := agent.SegmentByURL(p.ContentID, p.Master, segURL)
		if !joined[r.Swarm] {
			joined[r.Swarm] = true
			p.Agent.Join(r.Swarm)
		}
		return r
	}
	// loaded remembers a live stream's segments by media sequence, to evict
	// them once they leave the playlist.
	type held struct {
		seq uint64
		req agent.Request
	}
	var loaded []held

	clk := &clock{onStall: p.Agent.ReportStall}
	var next uint64
	first := true
	var pl *m3u8.MediaPlaylist
	var refreshed time.Time
	initDone := false
	for ctx.Err() == nil {
		now := time.Now()
		live := pl == nil || !pl.Closed
		if pl == nil || (live && now.Sub(refreshed) >= time.Duration(pl.TargetDuration*float64(time.Second)/2)) {
			np, err := p.playlist(ctx, mediaURL)
			if err != nil {
				if ctx.Err() == nil { // not the end of the run cutting a refresh short
					res.Errors++
				}
				sleep(ctx, 500*time.Millisecond)
				continue
			}
			pl, refreshed = np, now
			if !initDone && pl.Map != nil {
				if _, err := p.get(ctx, resolve(mediaURL, pl.Map.URI)); err != nil {
					if ctx.Err() == nil {
						res.Errors++
					}
					continue
				}
				initDone = true
			}
		}
		segs := segments(pl)
		if len(segs) == 0 {
			sleep(ctx, 500*time.Millisecond)
			continue
		}
		firstSeq, lastSeq := pl.SeqNo, pl.SeqNo+uint64(len(segs))-1
		if first {
			next = firstSeq
			if !pl.Closed && len(segs) > p.LiveSync {
				next = lastSeq - uint64(p.LiveSync) + 1
			}
			first = false
		}
		if next < firstSeq {
			next = firstSeq // fell out of the live window
		}
		if next > lastSeq {
			if pl.Closed {
				break // VOD played out
			}
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		level := clk.level(now)
		if clk.started && level >= p.BufferTarget {
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		seg := segs[next-firstSeq]
		deadline := now
		if clk.started {
			deadline = now.Add(level)
		}
		segURL := resolve(mediaURL, seg.URI)
		req := name(segURL)
		req.Deadline = deadline
		req.Duration = time.Duration(seg.Duration * float64(time.Second))
		got, err := p.Agent.Load(ctx, req)
		if err == nil && p.Check != nil && !p.Check(segURL, got.Data) {
			res.Corrupt++
		}
		if err != nil {
			if ctx.Err() == nil {
				res.Errors++
				sleep(ctx, 200*time.Millisecond)
			}
			continue
		}
		if !clk.started {
			res.StartupMs = time.Since(start).Milliseconds()
		}
		clk.add(time.Now(), seg.Duration)
		res.Segments++
		next++
		// With a healthy buffer, fetch the next segments ahead from peers
		// (never from the CDN): later loads then hit the cache.
		if pl.Closed && clk.level(time.Now()) > 4*time.Second {
			for ahead := next; ahead < next+2 && ahead <= lastSeq; ahead++ {
				s := segs[ahead-firstSeq]
				go p.Agent.Prefetch(ctx, name(resolve(mediaURL, s.URI)))
			}
		}
		if !pl.Closed {
			// Keep two behind the window for peers a little behind.
			loaded = append(loaded, held{next - 1, req})
			for len(loaded) > 0 && loaded[0].seq+2 < firstSeq {
				p.Agent.Evict(loaded[0].req.Swarm, loaded[0].req.Seq)
				loaded = loaded[1:]
			}
		}
	}
	now := time.Now()
	clk.advance(now)
	res.Stalls, res.StallMs, res.Played = clk.stalls, clk.stallTime.Milliseconds(), clk.pos
	if clk.stalled && ctx.Err() == nil {
		// A VOD that ended is not a stall; a live stream that ran dry is.
		res.Stalls++
		res.StallMs += now.Sub(clk.stallStart).Milliseconds()
	}
	return res, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func segments(pl *m3u8.MediaPlaylist) []*m3u8.MediaSegment {
	n := int(pl.Count())
	out := make([]*m3u8.MediaSegment, 0, n)
	for _, s := range pl.Segments[:n] {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

func (p *Player) variant(ctx context.Context) (mediaURL string, err error) {
	b, err := p.get(ctx, p.Master)
	if err != nil {
		return "", err
	}
	pl, kind, err := m3u8.DecodeFrom(bytes.NewReader(b), false)
	if err != nil {
		return "", fmt.Errorf("sim: %s: %w", p.Master, err)
	}
	if kind == m3u8.MEDIA {
		return p.Master, nil
	}
	mp := pl.(*m3u8.MasterPlaylist)
	if p.Rendition < 0 || p.Rendition >= len(mp.Variants) {
		return "", fmt.Errorf("sim: %s has %d variants, not %d", p.Master, len(mp.Variants), p.Rendition+1)
	}
	return resolve(p.Master, mp.Variants[p.Rendition].URI), nil
}

func (p *Player) playlist(ctx context.Context, u string) (*m3u8.MediaPlaylist, error) {
	b, err := p.get(ctx, u)
	if err != nil {
		return nil, err
	}
	pl, kind, err := m3u8.DecodeFrom(bytes.NewReader(b), false)
	if err != nil {
		return nil, fmt.Errorf("sim: %s: %w", u, err)
	}
	if kind != m3u8.MEDIA {
		return nil, errors.New("sim: " + u + " is not a media playlist")
	}
	return pl.(*m3u8.MediaPlaylist), nil
}

func (p *Player) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sim: %s: HTTP %d", u, resp.StatusCode)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 16<<20))
}

func resolve(base, ref string) string {
	b, err := url.Parse(base)
	if err != nil {
		return ref
	}
	r, err := url.Parse(ref)
	if err != nil {
		return ref
	}
	return b.ResolveReference(r).String()
}
