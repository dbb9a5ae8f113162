package tracker

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func FuzzVerifyToken(f *testing.F) {
	secret := []byte("0123456789abcdef")
	f.Add(Token(secret, "/a.m3u8", time.Unix(2e9, 0)), "/a.m3u8")
	f.Add("v1.99999999999999999999.AAAA", "/a")
	f.Add("v1..", "")
	f.Add("v1.-5.xx", "/a")
	f.Fuzz(func(t *testing.T, tok, content string) {
		if VerifyToken(secret, tok, content, time.Unix(1e9, 0)) != nil {
			return
		}
		// Only the exact token minted with the secret for that content passes.
		exp, _, _ := strings.Cut(strings.TrimPrefix(tok, tokenPrefix), ".")
		if want := tokenPrefix + exp + "." + base64.RawURLEncoding.EncodeToString(tokenMAC(secret, exp, content)); tok != want {
			t.Fatalf("accepted forged token %q for %q", tok, content)
		}
	})
}

func TestTokenRoundTrip(t *testing.T) {
	secret := []byte("0123456789abcdef")
	now := time.Now()
	tok := Token(secret, "/a", now.Add(time.Minute))
	if err := VerifyToken(secret, tok, "/a", now); err != nil {
		t.Fatal(err)
	}
	if err := VerifyToken(secret, tok, "/a", now.Add(2*time.Minute)); err != ErrTokenExpired {
		t.Fatalf("later: %v, want expired", err)
	}
	if err := VerifyToken(secret, tok, "/b", now); err != ErrBadToken {
		t.Fatalf("other content: %v", err)
	}
}
