package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/peercdn/peercdn/democdn"
)

// TestCDNCheck: cdn-check passes the demo origin publishing digests (but
// for its loopback address, which a default notary does not fetch), and
// names what a bare file server lacks and a wrong digest.
func TestCDNCheck(t *testing.T) {
	demo, err := democdn.Sample()
	if err != nil {
		t.Fatal(err)
	}
	demo.Digests = true
	good := httptest.NewServer(demo)
	t.Cleanup(good.Close)
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("segment bytes, no headers at all"))
	}))
	t.Cleanup(bare.Close)
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Repr-Digest", "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:") // the empty body's
		http.ServeContent(w, r, "s.m4s", time.Time{}, strings.NewReader("segment bytes"))
	}))
	t.Cleanup(liar.Close)

	verdicts := func(url string) map[string]string {
		res, err := checkCDN(context.Background(), http.DefaultClient, url, "https://site.example", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, r := range res {
			m[r.what] = r.verdict
		}
		return m
	}
	for what, v := range verdicts(good.URL + "/vod/360p/000.m4s") {
		if v != checkOK && what != "the CDN is on a private address" {
			t.Errorf("demo origin: %s %s", v, what)
		}
	}
	b := verdicts(bare.URL + "/s.m4s")
	for what, want := range map[string]string{
		`CORS: Access-Control-Allow-Origin is missing`:                                checkFail,
		"no Timing-Allow-Origin for the page":                                         checkWarn,
		"Range: HTTP 200":                                                             checkWarn,
		"CORS preflight does not allow the Range header":                              checkWarn,
		"no SHA-256 published (Repr-Digest, Content-Digest or x-amz-checksum-sha256)": checkWarn,
	} {
		if b[what] != want {
			t.Errorf("bare server: %q is %q, want %q (all: %v)", what, b[what], want, b)
		}
	}
	failed := 0
	for what, v := range verdicts(liar.URL + "/s.m4s") {
		if v == checkFail {
			failed++
			if !strings.HasPrefix(what, "the published SHA-256 does not match the body") {
				t.Errorf("liar: %s %s", v, what)
			}
		}
	}
	if failed != 1 {
		t.Errorf("liar: %d failures, want the digest's", failed)
	}
}
