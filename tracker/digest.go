package tracker

import (
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"time"
)

// A CDN that publishes each file's SHA-256 in a response header spares the
// notary its copy of every segment: a HEAD request reads the digest, and
// the body stays at the CDN. At 6 viewers that copy was one CDN fetch in
// six, whatever the peers did. Read, in this order:
//
//   - Repr-Digest and Content-Digest (RFC 9530): "sha-256=:<base64>:",
//     among other algorithms;
//   - x-amz-checksum-sha256 (Amazon S3, asked for with x-amz-checksum-mode:
//     ENABLED): the whole object's, not a multipart upload's composite.
//
// Neither is taken from a response with a content coding: its digest may
// be of the coded bytes, and viewers hash the decoded ones.
//
// A digest header is a CDN's word as much as its body, but a wrong one (a
// proxy that kept a stale header, a digest of another representation)
// would have the notary ban every honest viewer of the segment. So an
// origin's digests are believed only after one of them matched the body
// the notary fetched itself (digestOrigins).

// CDNDigest returns the SHA-256 response headers h publish for the
// response's bytes (`peercdn cdn-check` reads them too).
func CDNDigest(h http.Header) (sum [32]byte, ok bool) {
	if ce := strings.TrimSpace(h.Get("Content-Encoding")); ce != "" && !strings.EqualFold(ce, "identity") {
		return sum, false
	}
	for _, field := range []string{"Repr-Digest", "Content-Digest"} {
		if sum, ok = sha256Member(strings.Join(h.Values(field), ",")); ok {
			return sum, true
		}
	}
	if typ := h.Get("X-Amz-Checksum-Type"); typ != "" && !strings.EqualFold(typ, "FULL_OBJECT") {
		return sum, false
	}
	return decodeSum(strings.TrimSpace(h.Get("X-Amz-Checksum-Sha256")))
}

// AskDigest asks, in request headers h, for the SHA-256 CDNDigest reads:
// RFC 9530's Want- fields, and S3's checksum mode, without which S3 sends
// none; for the identity coding, whose digest is of the bytes viewers hash.
func AskDigest(h http.Header) {
	h.Set("Want-Repr-Digest", "sha-256=10")
	h.Set("Want-Content-Digest", "sha-256=10")
	h.Set("X-Amz-Checksum-Mode", "ENABLED")
	h.Set("Accept-Encoding", "identity")
}

// sha256Member reads the sha-256 member of an RFC 9530 digest field, a
// structured-field dictionary of byte sequences: `sha-512=:...:,
// sha-256=:...:` (parameters after ';' are ignored).
func sha256Member(field string) (sum [32]byte, ok bool) {
	if len(field) > 4096 {
		return sum, false
	}
	for member := range strings.SplitSeq(field, ",") {
		key, value, found := strings.Cut(strings.TrimSpace(member), "=")
		if !found || key != "sha-256" {
			continue
		}
		value, _, _ = strings.Cut(value, ";")
		value = strings.TrimSpace(value)
		if len(value) < 2 || value[0] != ':' || value[len(value)-1] != ':' {
			return sum, false
		}
		return decodeSum(value[1 : len(value)-1])
	}
	return sum, false
}

// decodeSum decodes a base64 SHA-256.
func decodeSum(b64 string) (sum [32]byte, ok bool) {
	if len(b64) != base64.StdEncoding.EncodedLen(len(sum)) {
		return sum, false
	}
	// DecodedLen, not 32: 44 characters without padding decode to 33
	// bytes, and Decode writes past a shorter buffer (the fuzzer's find).
	var buf [33]byte
	n, err := base64.StdEncoding.Decode(buf[:], []byte(b64))
	if err != nil || n != len(sum) {
		return sum, false
	}
	copy(sum[:], buf[:n])
	return sum, true
}

// digestOrigins remembers, per CDN origin, whether its digest headers can
// stand in for the notary's fetch: unknown (ask, and check the digest
// against a fetch), trusted (ask only), or not published or wrong (fetch
// only). Either is learnt again after digestRecheck: a CDN may start
// publishing digests, or its configuration change under a trusted one.
type digestOrigins struct {
	mu sync.Mutex
	m  map[string]digestOrigin
}

type digestOrigin struct {
	trusted bool
	at      time.Time // when learnt
}

const (
	// digestRecheck is how long what was learnt of an origin holds: a
	// check costs one segment's copy.
	digestRecheck = 10 * time.Minute
	// maxDigestOrigins bounds the memory; viewers name the origins.
	maxDigestOrigins = 1024
)

// state says whether origin's digests are trusted, and whether to ask it
// for one at all.
func (d *digestOrigins) state(origin string, now time.Time) (trusted, ask bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	o, known := d.m[origin]
	if !known || now.Sub(o.at) > digestRecheck {
		return false, true
	}
	return o.trusted, o.trusted
}

func (d *digestOrigins) learn(origin string, trusted bool, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil || len(d.m) >= maxDigestOrigins {
		d.m = make(map[string]digestOrigin)
	}
	d.m[origin] = digestOrigin{trusted: trusted, at: now}
}
