package tracker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/peercdn/peercdn/peerwire"
	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/cluster"
)

// The notary is the tracker fetching a segment from the CDN itself, so
// that what viewers say about it can be checked against what the CDN
// serves: every segment's first report under notary integrity, and
// contested segments under quorum integrity (integrity.go).
//
// Viewers choose the URLs it fetches, so it fetches only what
// notaryAllows, never follows a redirect, uses no proxy, and (unless the
// operator listed the origins or allowed private addresses) connects only
// to public addresses, checked at connect time so DNS cannot aim it
// inward. One fetch per segment and CDN origin per node, notary_fetches at
// a time, each viewer starting at most notaryStartsPerSecond.

const (
	notaryTimeout  = 10 * time.Second
	notaryMaxBytes = peerwire.MaxSegmentSize // agents share nothing larger
	// notaryQueueFactor: fetches waiting for a slot, per slot.
	notaryQueueFactor = 16
	// notaryStartsPerSecond and notaryStartBurst bound the fetches one
	// viewer's reports start (a viewer reports at most one segment per
	// segment duration and swarm).
	notaryStartsPerSecond = 2
	notaryStartBurst      = 20
)

// errPrivateAddress refuses a notary connection to a non-public address.
var errPrivateAddress = errors.New("notary: not a public address (list the CDN in notary_cdns, or set notary_private)")

func newNotaryClient(publicOnly bool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if publicOnly {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !PublicAddr(ap.Addr()) {
				return errPrivateAddress
			}
			return nil
		}
	}
	return &http.Client{
		Timeout: notaryTimeout,
		Transport: &http.Transport{
			Proxy:                  nil, // a proxy would connect where the address check cannot see
			DialContext:            d.DialContext,
			TLSHandshakeTimeout:    5 * time.Second,
			ResponseHeaderTimeout:  5 * time.Second,
			MaxResponseHeaderBytes: 64 << 10,
			MaxIdleConnsPerHost:    4,
			IdleConnTimeout:        30 * time.Second,
		},
		// Never follow a redirect: it could lead off the allow-list.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// sharedAddressSpace is RFC 6598's carrier-grade NAT range.
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// PublicAddr says whether a is an address on the public internet: not
// loopback, private, link-local, shared, multicast or unspecified. The
// notary connects only to these (unless told otherwise); `peercdn
// cdn-check` warns of a CDN elsewhere.
func PublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !sharedAddressSpace.Contains(a)
}

// notaryJob is one fetch: seg of swarm k from src, at CDN origin cdn (cdn
// empty: a contested segment under quorum integrity).
type notaryJob struct {
	k   cluster.Key
	seg uint64
	src signaling.Source
	cdn string
}

// sourceOf reads where a hash message says its segment is served, and
// checks that it names that segment: a viewer must not have the notary
// vouch for one segment's bytes under another's number (the notary would
// hash what that URL serves, and peers could then pass the other segment
// off as this one). ok is false for a URL that does not name seg.
func sourceOf(m *signaling.Message, seg uint64) (signaling.Source, bool) {
	rng, ranged, err := signaling.ParseRange(m.Range)
	if err != nil || m.URL == "" {
		return signaling.Source{}, false
	}
	src := signaling.Source{URL: m.URL}
	if ranged {
		src.Range = &rng
	}
	return src, src.ID() == seg
}

// startNotary queues j; false when the queue is full.
func (s *Server) startNotary(j notaryJob) bool {
	if s.notaryQueued.Add(1) > int64(s.cfg.NotaryFetches*notaryQueueFactor) {
		s.notaryQueued.Add(-1)
		s.m.rejects.WithLabelValues("notary_busy").Inc()
		return false
	}
	go func() {
		s.notarySem <- struct{}{}
		defer func() { <-s.notarySem; s.notaryQueued.Add(-1) }()
		s.runNotary(j)
	}()
	return true
}

func (s *Server) runNotary(j notaryJob) {
	sum, err := s.notarySum(j.src)
	if err != nil {
		s.log.Debug("notary fetch failed", "url", j.src.URL, "range", j.src.Range, "err", err)
		s.m.rejects.WithLabelValues("notary_failed").Inc()
		if j.cdn != "" {
			s.hub.notaryFailed(j.k, j.seg, j.cdn, time.Now())
		}
		return
	}
	if j.cdn == "" {
		ok, liars := s.hub.settle(j.k, j.seg, sum)
		if !ok {
			return
		}
		s.log.Info("notary settled a contested segment", "swarm", j.k.Swarm.String(), "segment", j.seg, "liars", len(liars))
		s.pushHash(j.k, j.seg, sum, "")
		s.evict(j.k, liars, "reported a false segment hash")
		return
	}
	s.applyNotary(j.k, j.seg, j.cdn, sum)
	s.clusterNotary(j.k, j.seg, j.cdn, sum)
}

// applyNotary records the notary's hash (found here or by another node),
// pushes it to this node's members and removes those that reported another.
func (s *Server) applyNotary(k cluster.Key, seg uint64, cdn, sum string) {
	fresh, liars := s.hub.notarized(k, seg, cdn, sum)
	if !fresh {
		return
	}
	s.pushHash(k, seg, sum, cdn)
	if len(liars) > 0 {
		s.log.Info("notary caught false segment hashes", "swarm", k.Swarm.String(), "segment", seg, "cdn", cdn, "liars", len(liars))
		s.evict(k, liars, "reported a segment hash the CDN does not serve")
	}
}

// evict tells peers removed from swarm k why, and the cluster that they left.
func (s *Server) evict(k cluster.Key, peers []*peer, why string) {
	for _, p := range peers {
		s.clusterLeave(p, []cluster.Key{k})
		p.conn.reply(signaling.CodeBanned, "", "removed from "+k.Swarm.String()+": "+why)
	}
}

// notarySum returns the hex SHA-256 of what the CDN serves at src: the
// digest its origin publishes where those are trusted (a HEAD: the body
// stays at the CDN), and otherwise fetched (notaryFetch); where the
// origin's digests are not known yet, the fetch checks the published one
// (digest.go). Byte ranges are always fetched: a digest is the whole
// file's.
func (s *Server) notarySum(src signaling.Source) (string, error) {
	origin, ok := signaling.CDNOrigin(src.URL)
	if src.Range != nil || !ok {
		return s.notaryFetch(src)
	}
	now := time.Now()
	trusted, ask := s.digests.state(origin, now)
	if !ask {
		return s.notaryFetch(src)
	}
	published, has, headErr := s.notaryHead(src.URL)
	if headErr == nil && has && trusted {
		s.m.notaryDigests.Inc()
		return hex.EncodeToString(published[:]), nil
	}
	sum, err := s.notaryFetch(src)
	if err != nil || headErr != nil || trusted {
		// Nothing learnt: the fetch failed, the HEAD did, or one file of
		// a trusted origin came without a digest.
		return sum, err
	}
	good := has && hex.EncodeToString(published[:]) == sum
	if has && !good {
		s.log.Warn("the CDN's digest header does not match its body: the notary fetches this origin's segments", "origin", origin, "url", src.URL)
	}
	s.digests.learn(origin, good, now)
	return sum, nil
}

// notaryHead asks the CDN for url's published digest without its body.
// A HEAD the CDN refuses (405, say) has none; err is for one that failed.
func (s *Server) notaryHead(url string) (sum [32]byte, ok bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), notaryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return sum, false, err
	}
	AskDigest(req.Header)
	resp, err := s.notaryClient.Do(req)
	if err != nil {
		return sum, false, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength > notaryMaxBytes {
		return sum, false, nil
	}
	sum, ok = CDNDigest(resp.Header)
	return sum, ok, nil
}

// notaryFetch returns the hex SHA-256 of what the CDN serves at src: the
// whole response, or for a byte-range segment exactly the range's bytes
// (from a 206 whose Content-Range says so, or cut from a 200 of the whole
// file, reading no further than the range).
func (s *Server) notaryFetch(src signaling.Source) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), notaryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.URL, nil)
	if err != nil {
		return "", err
	}
	if src.Range != nil {
		if src.Range.Len() > notaryMaxBytes {
			return "", errors.New("segment larger than the notary reads")
		}
		req.Header.Set("Range", src.Range.Header())
	}
	resp, err := s.notaryClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, want := io.Reader(resp.Body), resp.ContentLength
	switch {
	case src.Range != nil && resp.StatusCode == http.StatusPartialContent:
		if got, _, ok := signaling.ParseContentRange(resp.Header.Get("Content-Range")); !ok || got != *src.Range {
			return "", fmt.Errorf("HTTP 206 for %s: Content-Range %q", src.Range.Header(), resp.Header.Get("Content-Range"))
		}
	case src.Range != nil && resp.StatusCode == http.StatusOK:
		// A CDN that ignores Range: skip to the range and read it alone,
		// not far into a large file.
		if src.Range.First > signaling.MaxRangeSkip {
			return "", errors.New("the CDN ignores Range and the range is too far into the file")
		}
		if _, err := io.CopyN(io.Discard, resp.Body, src.Range.First); err != nil {
			return "", fmt.Errorf("the file ends before the range: %w", err)
		}
		body, want = io.LimitReader(resp.Body, src.Range.Len()), src.Range.Len()
	case resp.StatusCode != http.StatusOK || src.Range != nil:
		return "", fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if want > notaryMaxBytes {
		return "", errors.New("segment larger than the notary reads")
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(body, notaryMaxBytes+1))
	if err != nil {
		return "", err
	}
	if n > notaryMaxBytes {
		return "", errors.New("segment larger than the notary reads")
	}
	if want >= 0 && n != want {
		return "", errors.New("body cut short")
	}
	s.m.notaryFetches.Inc()
	return hex.EncodeToString(h.Sum(nil)), nil
}
