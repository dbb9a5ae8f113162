package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/peercdn/peercdn/peerwire"
	"github.com/peercdn/peercdn/tracker"
)

// cdnCheckCmd is `peercdn cdn-check SEGMENT_URL`: what a site's CDN must
// allow for peercdn, asked of it as a viewer's page and the tracker's
// notary would. Site owners' questions ("why is P2P at 0%", "why does the
// notary fail") mostly come down to one header; this names it.
func cdnCheckCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("cdn-check", flag.ContinueOnError)
	page := fs.String("page-origin", "https://example.com", "the origin of the pages that play the stream (scheme://host[:port]): CORS is checked for it")
	timeout := fs.Duration("timeout", 10*time.Second, "give up on each request after this long")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: peercdn cdn-check [flags] SEGMENT_URL\n\nChecks what peercdn needs of the CDN serving SEGMENT_URL (a media segment):\nCORS for the page's fetches and ranges, resource timing, and a published\nSHA-256 that spares the tracker's notary a copy of each segment.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("one segment URL expected")
	}
	res, err := checkCDN(context.Background(), http.DefaultClient, fs.Arg(0), *page, *timeout)
	if err != nil {
		return err
	}
	failed := 0
	for _, r := range res {
		fmt.Fprintf(out, "%-4s %s\n", r.verdict, r.what)
		if r.why != "" {
			fmt.Fprintf(out, "     %s\n", r.why)
		}
		if r.verdict == checkFail {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d check(s) failed", failed)
	}
	return nil
}

// A check's verdict: fail breaks peercdn for pages on that origin (they
// play from the CDN alone), warn costs offload or diagnostics.
const (
	checkOK   = "ok"
	checkWarn = "warn"
	checkFail = "FAIL"
)

type checkResult struct{ verdict, what, why string }

// checkCDN asks the CDN at segment what the agent and the notary need.
func checkCDN(ctx context.Context, client *http.Client, segment, pageOrigin string, timeout time.Duration) ([]checkResult, error) {
	u, err := url.Parse(segment)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("not an http(s) URL: %q", segment)
	}
	do := func(method string, h http.Header) (*http.Response, []byte, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, segment, nil)
		if err != nil {
			return nil, nil, err
		}
		req.Header = h
		resp, err := client.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, peerwire.MaxSegmentSize+1))
		return resp, body, err
	}
	var out []checkResult
	add := func(verdict, what, why string) { out = append(out, checkResult{verdict, what, why}) }
	allows := func(resp *http.Response) bool {
		a := resp.Header.Get("Access-Control-Allow-Origin")
		return a == "*" || strings.EqualFold(a, pageOrigin)
	}

	// The segment, as a page's fetch asks for it.
	resp, body, err := do(http.MethodGet, http.Header{"Origin": {pageOrigin}, "Accept-Encoding": {"identity"}})
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", segment, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", segment, resp.StatusCode)
	}
	if len(body) > peerwire.MaxSegmentSize {
		add(checkFail, "segment size", fmt.Sprintf("larger than peers exchange (%d MiB): it always comes from the CDN", peerwire.MaxSegmentSize>>20))
	} else {
		add(checkOK, fmt.Sprintf("GET: %d bytes", len(body)), "")
	}
	sum := sha256.Sum256(body)
	if allows(resp) {
		add(checkOK, "CORS: the page may read the segment (Access-Control-Allow-Origin)", "")
	} else {
		add(checkFail, "CORS: Access-Control-Allow-Origin is "+quoted(resp.Header.Get("Access-Control-Allow-Origin")),
			"pages on "+pageOrigin+" cannot read the segment with fetch: the agent cannot load it, and peers cannot share it")
	}
	if tao := resp.Header.Get("Timing-Allow-Origin"); tao == "*" || strings.Contains(tao, pageOrigin) {
		add(checkOK, "Timing-Allow-Origin: the page can tell cache hits from CDN loads", "")
	} else {
		add(checkWarn, "no Timing-Allow-Origin for the page",
			"loads the browser's cache served count as CDN bytes in peercdn.stats(), and hand the player's ABR no timing")
	}

	// A range, which the agent asks for when peers sent the head of a
	// segment and the CDN completes it.
	resp, part, err := do(http.MethodGet, http.Header{"Origin": {pageOrigin}, "Range": {"bytes=1-10"}, "Accept-Encoding": {"identity"}})
	switch {
	case err != nil:
		add(checkWarn, "Range: "+err.Error(), "")
	case resp.StatusCode == http.StatusPartialContent && len(body) > 10 && string(part) == string(body[1:11]):
		add(checkOK, "Range: 206 with the bytes asked for", "")
		if exposed(resp, "Content-Range") {
			add(checkOK, "Content-Range is exposed to the page", "")
		} else {
			add(checkWarn, "Content-Range is not in Access-Control-Expose-Headers",
				"the agent cannot read where a partial response starts: it completes a segment from the whole file instead")
		}
	default:
		add(checkWarn, fmt.Sprintf("Range: HTTP %d", resp.StatusCode),
			"the CDN ignores ranges: completing a segment a peer began costs the whole segment")
	}

	// The preflight a page's ranged fetch needs.
	resp, _, err = do(http.MethodOptions, http.Header{"Origin": {pageOrigin}, "Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"range"}})
	if err == nil && allows(resp) && strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "range") {
		add(checkOK, "CORS preflight allows the Range header", "")
	} else {
		add(checkWarn, "CORS preflight does not allow the Range header",
			"ranged loads (HLS byte ranges, DASH SegmentBase, completing a segment) fail from pages on "+pageOrigin)
	}

	// The notary's view.
	if private(ctx, u.Hostname()) {
		add(checkWarn, "the CDN is on a private address",
			"a tracker's notary fetches only public addresses: list the CDN in notary_cdns (or set notary_private)")
	}
	ask := http.Header{}
	tracker.AskDigest(ask)
	resp, _, err = do(http.MethodHead, ask)
	switch published, ok := tracker.CDNDigest(respHeader(resp, err)); {
	case err != nil:
		add(checkWarn, "HEAD: "+err.Error(), "")
	case !ok:
		add(checkWarn, "no SHA-256 published (Repr-Digest, Content-Digest or x-amz-checksum-sha256)",
			"without a hash manifest, the tracker's notary fetches a copy of every segment from the CDN")
	case published != sum:
		add(checkFail, "the published SHA-256 does not match the body ("+hex.EncodeToString(published[:])+", body "+hex.EncodeToString(sum[:])+")",
			"the notary ignores this CDN's digests and fetches copies")
	default:
		add(checkOK, "SHA-256 published and matches the body: the notary reads it with a HEAD, no copy", "")
	}
	return out, nil
}

func respHeader(resp *http.Response, err error) http.Header {
	if err != nil || resp == nil || resp.StatusCode != http.StatusOK {
		return http.Header{}
	}
	return resp.Header
}

// exposed says whether a cross-origin page may read header name.
func exposed(resp *http.Response, name string) bool {
	for v := range strings.SplitSeq(resp.Header.Get("Access-Control-Expose-Headers"), ",") {
		if v = strings.TrimSpace(v); v == "*" || strings.EqualFold(v, name) {
			return true
		}
	}
	return false
}

func quoted(s string) string {
	if s == "" {
		return "missing"
	}
	return fmt.Sprintf("%q", s)
}

// private says whether host is, or resolves to, an address the notary
// does not fetch from by default (tracker.PublicAddr).
func private(ctx context.Context, host string) bool {
	addrs := []netip.Addr{}
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = append(addrs, a)
	} else if ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host); err == nil {
		addrs = ips
	}
	for _, a := range addrs {
		if !tracker.PublicAddr(a) {
			return true
		}
	}
	return false
}
