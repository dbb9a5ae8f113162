package agent

import (
	"context"
	"io"
	"net/url"
	"path"
	"sync"
	"time"

	"github.com/peercdn/peercdn/hashfile"
	"github.com/peercdn/peercdn/signaling"
)

// Hash manifests: when the origin publishes peercdn-hashes.json next to
// its segments, a peer's copy is checked against it, as trusted as the CDN
// itself and ahead of anything the tracker says (trust.go), without
// waiting for the tracker (and with one CDN copy per segment per
// neighbourhood).

type manifests struct {
	mu   sync.Mutex
	dirs map[string]*dirHashes // by manifest URL
}

type dirHashes struct {
	fetched time.Time
	missing bool          // the origin publishes none here (404)
	fetch   chan struct{} // closed when the fetch under way ends; nil: none
	sums    map[string][32]byte
}

const (
	// manifestRefresh: a live manifest gains a segment every target
	// duration; fetch it at most this often per folder.
	manifestRefresh = time.Second
	// manifestMissingRetry: a folder without a manifest is asked again
	// after this long.
	manifestMissingRetry = 5 * time.Minute
	manifestTimeout      = 2 * time.Second
)

// manifestURL is the manifest next to a segment, and the segment's name
// in it: the file name, and for a byte range of the file
// "name#first-last" (hashfile).
func manifestURL(segURL string) (string, string, bool) {
	u, err := url.Parse(segURL)
	if err != nil || u.Path == "" {
		return "", "", false
	}
	name := path.Base(u.Path)
	u.Path = path.Join(path.Dir(u.Path), hashfile.Name)
	u.RawPath = ""
	return u.String(), name, true
}

// manifestHash looks segment k (at src) up in its folder's manifest,
// fetching the manifest when unknown or stale, and trusts the hash found.
// It reports whether k now has a trusted hash.
func (a *Agent) manifestHash(ctx context.Context, sw *swarm, k segKey, src signaling.Source) bool {
	if !a.lookForManifests() {
		return false
	}
	murl, name, ok := manifestURL(src.URL)
	if !ok {
		return false
	}
	if src.Range != nil {
		name = hashfile.RangeName(name, src.Range.First, src.Range.Last)
	}
	m := &a.manifests
	m.mu.Lock()
	if m.dirs == nil {
		m.dirs = map[string]*dirHashes{}
	}
	d := m.dirs[murl]
	if d == nil {
		d = &dirHashes{}
		m.dirs[murl] = d
	}
	if sum, ok := d.sums[name]; ok {
		m.mu.Unlock()
		a.trust.learnManifest(k, sum)
		return true
	}
	if f := d.fetch; f != nil {
		// A fetch is under way: its answer is ours too. (Returning at
		// once sent the segments adopted together at startup to the
		// tracker's notary, a CDN copy each, for want of a manifest
		// that was on its way.)
		m.mu.Unlock()
		select {
		case <-f:
		case <-ctx.Done():
			return false
		}
		m.mu.Lock()
		sum, ok := d.sums[name]
		m.mu.Unlock()
		if ok {
			a.trust.learnManifest(k, sum)
		}
		return ok
	}
	wait := manifestRefresh
	if d.missing {
		wait = manifestMissingRetry
	}
	if time.Since(d.fetched) < wait {
		m.mu.Unlock()
		return false
	}
	done := make(chan struct{})
	d.fetch = done
	m.mu.Unlock()

	sums, missing := a.fetchManifest(ctx, murl)
	m.mu.Lock()
	d.fetch = nil
	defer close(done) // after the unlock below: waiters read d.sums
	d.fetched = time.Now()
	d.missing = missing
	if sums != nil {
		d.sums = sums
	}
	sum, ok := d.sums[name]
	m.mu.Unlock()
	if sums != nil {
		sw.hasManifest.Store(true)
	}
	if ok {
		a.trust.learnManifest(k, sum)
	}
	return ok
}

// lookForManifests says whether the CDN is said to publish hash manifests:
// by the page (Config.HashManifests), else by the tracker. Where it
// publishes none, asking costs every viewer a 404 in its console.
func (a *Agent) lookForManifests() bool {
	if a.cfg.HashManifests != nil {
		return *a.cfg.HashManifests
	}
	return a.manifestsOn.Load()
}

// noManifest says whether no manifest lists segURL's segment: none is
// looked for, or the origin publishes none in its folder.
func (a *Agent) noManifest(segURL string) bool {
	return !a.lookForManifests() || a.manifests.missing(segURL)
}

// missing says whether the origin is known to publish no manifest in
// segURL's folder (so the quorum's word, or none, may count there).
func (m *manifests) missing(segURL string) bool {
	murl, _, ok := manifestURL(segURL)
	if !ok {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.dirs[murl]
	return d != nil && d.missing && d.sums == nil
}

// fetchManifest gets and decodes a manifest; missing means the origin has
// none there (as opposed to a failed fetch).
func (a *Agent) fetchManifest(ctx context.Context, murl string) (map[string][32]byte, bool) {
	ctx, cancel := context.WithTimeout(ctx, manifestTimeout)
	defer cancel()
	resp, err := a.cfg.CDN.Get(ctx, murl, 0, -1)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	if resp.Status != 200 {
		return nil, resp.Status == 404 || resp.Status == 403
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, hashfile.MaxSize+1))
	if err != nil {
		return nil, false
	}
	sums, err := hashfile.Decode(b)
	if err != nil {
		a.log.Warn("bad hash manifest", "url", murl, "err", err)
		return nil, true
	}
	return sums, false
}
