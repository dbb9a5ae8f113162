package tracker

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/peercdn/peercdn/signaling"
)

func TestCDNDigest(t *testing.T) {
	body := []byte("segment bytes")
	sum := sha256.Sum256(body)
	b64 := base64.StdEncoding.EncodeToString(sum[:])
	other := sha256.Sum256([]byte("other"))
	for _, c := range []struct {
		name string
		h    http.Header
		ok   bool
	}{
		{"repr", http.Header{"Repr-Digest": {"sha-256=:" + b64 + ":"}}, true},
		{"content", http.Header{"Content-Digest": {"sha-256=:" + b64 + ":"}}, true},
		{"among others", http.Header{"Repr-Digest": {"sha-512=:AAAA:, sha-256=:" + b64 + ":;x=1"}}, true},
		{"split over lines", http.Header{"Content-Digest": {"unixsum=:AA==:", "sha-256=:" + b64 + ":"}}, true},
		{"repr first", http.Header{"Repr-Digest": {"sha-256=:" + b64 + ":"}, "Content-Digest": {"sha-256=:" + base64.StdEncoding.EncodeToString(other[:]) + ":"}}, true},
		{"s3", http.Header{"X-Amz-Checksum-Sha256": {b64}}, true},
		{"s3 full object", http.Header{"X-Amz-Checksum-Sha256": {b64}, "X-Amz-Checksum-Type": {"FULL_OBJECT"}}, true},
		{"s3 composite", http.Header{"X-Amz-Checksum-Sha256": {b64 + "-3"}, "X-Amz-Checksum-Type": {"COMPOSITE"}}, false},
		{"coded", http.Header{"Repr-Digest": {"sha-256=:" + b64 + ":"}, "Content-Encoding": {"gzip"}}, false},
		{"identity coding", http.Header{"Repr-Digest": {"sha-256=:" + b64 + ":"}, "Content-Encoding": {"identity"}}, true},
		{"md5 only", http.Header{"Repr-Digest": {"md5=:AAAAAAAAAAAAAAAAAAAAAA==:"}}, false},
		{"not a byte sequence", http.Header{"Repr-Digest": {"sha-256=" + b64}}, false},
		{"short", http.Header{"Repr-Digest": {"sha-256=:AAAA:"}}, false},
		{"bad base64", http.Header{"Repr-Digest": {"sha-256=:" + b64[:40] + "!!!=:"}}, false},
		{"none", http.Header{}, false},
	} {
		got, ok := CDNDigest(c.h)
		if ok != c.ok || ok && got != sum {
			t.Errorf("%s: %x, %v; want ok=%v", c.name, got, ok, c.ok)
		}
	}
}

func FuzzCDNDigest(f *testing.F) {
	f.Add("sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:", "", "")
	f.Add("sha-512=:AAAA:, sha-256=:x:;a=b", "gzip", "abc-2")
	f.Fuzz(func(t *testing.T, digest, coding, amz string) {
		h := http.Header{"Repr-Digest": {digest}, "Content-Digest": {digest}, "Content-Encoding": {coding}, "X-Amz-Checksum-Sha256": {amz}}
		sum, ok := CDNDigest(h)
		if !ok && sum != ([32]byte{}) && amz == "" {
			t.Fatalf("no digest, but %x", sum)
		}
	})
}

// digestingCDN serves body at every path with the digest header digest
// (none when empty) and Content-Encoding coding, counting GETs and HEADs.
func digestingCDN(t *testing.T, body []byte, digest, coding string) (*httptest.Server, *atomic.Int32, *atomic.Int32) {
	var gets, heads atomic.Int32
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			heads.Add(1)
		} else {
			gets.Add(1)
		}
		if digest != "" {
			w.Header().Set("Repr-Digest", digest)
		}
		if coding != "" {
			w.Header().Set("Content-Encoding", coding)
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		if r.Method != http.MethodHead {
			w.Write(body)
		}
	}))
	t.Cleanup(o.Close)
	return o, &gets, &heads
}

// TestNotaryReadsTheCDNsDigest: where the CDN publishes each file's
// SHA-256 (RFC 9530's Repr-Digest here), the notary checks it once
// against a copy it fetches, then reads it with a HEAD for the origin's
// other segments: no more copies at the CDN. A digest that does not match
// the body, or one of coded bytes, is never believed: the notary fetches
// as before, and vouches for the bytes, not the header, so that no honest
// viewer is removed for a CDN's wrong header.
func TestNotaryReadsTheCDNsDigest(t *testing.T) {
	body := []byte("segment bytes, the same at every path")
	sum := sha256.Sum256(body)
	right := "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
	wrongSum := sha256.Sum256([]byte("another file"))
	wrong := "sha-256=:" + base64.StdEncoding.EncodeToString(wrongSum[:]) + ":"
	for _, c := range []struct {
		name, digest, coding string
		gets, heads          int32 // after 4 segments
		digests              float64
	}{
		{"published", right, "", 1, 4, 3},
		{"wrong", wrong, "", 4, 1, 0},
		{"none", "", "", 4, 1, 0},
		{"coded", right, "br", 4, 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			cdn, gets, heads := digestingCDN(t, body, c.digest, c.coding)
			n := startNode(t, func(c *Config) { c.NotaryPrivate = true })
			fetcher, watcher := n.dial(t, ""), n.dial(t, "")
			join(t, fetcher, live, "")
			join(t, watcher, live, "")
			for i := range 4 {
				url := fmt.Sprintf("%s/live/%d.m4s", cdn.URL, i)
				// Reported with the body's hash: an honest viewer.
				send(t, fetcher, &signaling.Message{Type: signaling.TypeHash, Swarm: &live, Segment: segOf(url), SHA256: sumOf(body), URL: url})
				expectHash(t, watcher, segOf(url), sumOf(body))
			}
			if gets.Load() != c.gets || heads.Load() != c.heads {
				t.Errorf("the CDN served %d GETs and %d HEADs, want %d and %d", gets.Load(), heads.Load(), c.gets, c.heads)
			}
			if got := testutil.ToFloat64(n.srv.m.notaryDigests); got != c.digests {
				t.Errorf("notary_digests_total = %v, want %v", got, c.digests)
			}
			for _, m := range drain(fetcher, 100*time.Millisecond) {
				if m.Type == signaling.TypeError {
					t.Fatalf("the honest reporter got %s: %s", m.Code, m.Text)
				}
			}
		})
	}
}
