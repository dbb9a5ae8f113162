package tracker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/peercdn/peercdn/signaling"
)

// The notary settles a contested segment: when viewers' reports of its
// hash conflict and one of them fetched it from an allow-listed origin
// (notary_origins), the tracker fetches it once itself, trusts that hash,
// and bans the viewers that reported another.

const (
	notaryTimeout  = 10 * time.Second
	notaryMaxBytes = 64 << 20
	notaryInFlight = 4 // concurrent notary fetches per node
)

func newNotaryClient() *http.Client {
	return &http.Client{
		Timeout: notaryTimeout,
		// Never follow a redirect: it could lead off the allow-list.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// notarize fetches url (already checked against notary_origins) in the
// background and settles seg with its hash.
func (s *Server) notarize(k swarmKey, seg uint64, url string) {
	select {
	case s.notarySem <- struct{}{}:
	default:
		s.m.rejects.WithLabelValues("notary_busy").Inc()
		return // busy: the segment stays contested (CDN only)
	}
	go func() {
		defer func() { <-s.notarySem }()
		sum, err := s.notaryFetch(url)
		if err != nil {
			s.log.Warn("notary fetch failed", "url", url, "err", err)
			s.m.rejects.WithLabelValues("notary_failed").Inc()
			return
		}
		ok, liars := s.hub.settle(k, seg, sum)
		if !ok {
			return
		}
		s.log.Info("notary settled a contested segment", "swarm", k.swarm.String(), "segment", seg, "liars", len(liars))
		s.pushHash(k, seg, sum)
		for _, p := range liars {
			s.clusterLeave(p, []swarmKey{k})
			p.conn.reply(signaling.CodeBanned, "", "removed from "+k.swarm.String()+": reported a false segment hash")
		}
	}()
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
