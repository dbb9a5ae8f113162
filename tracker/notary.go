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
			if err != nil || !publicAddr(ap.Addr()) {
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

// publicAddr says whether a is an address on the public internet: not
// loopback, private, link-local, shared, multicast or unspecified.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !sharedAddressSpace.Contains(a)
}

// notaryJob is one fetch: seg of swarm k from url, at CDN origin cdn (cdn
// empty: a contested segment under quorum integrity).
type notaryJob struct {
	k   cluster.Key
	seg uint64
	url string
	cdn string
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
	sum, err := s.notaryFetch(j.url)
	if err != nil {
		s.log.Debug("notary fetch failed", "url", j.url, "err", err)
		s.m.rejects.WithLabelValues("notary_failed").Inc()
		if j.cdn != "" {
			s.hub.notaryFailed(j.k, j.seg, j.cdn, time.Now())
		}
		return
	}
	s.m.notaryFetches.Inc()
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

func (s *Server) notaryFetch(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), notaryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := s.notaryClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if resp.ContentLength > notaryMaxBytes {
		return "", errors.New("segment larger than the notary reads")
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(resp.Body, notaryMaxBytes+1))
	if err != nil {
		return "", err
	}
	if n > notaryMaxBytes {
		return "", errors.New("segment larger than the notary reads")
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return "", errors.New("body cut short")
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
