package tracker

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Join tokens let a site decide who may use its tracker for which title.
//
// A token is "v1.<expiry unix seconds>.<base64url HMAC-SHA256>", the MAC taken
// with the tracker's token secret over "peercdn-join-v1\n<expiry>\n<content id>".
// The site's backend mints one per page view (see `peercdn token`); the
// tracker checks it on every join, so a reconnect needs a token still valid.

// Token errors.
var (
	ErrBadToken     = errors.New("join token is malformed or not for this content")
	ErrTokenExpired = errors.New("join token expired")
)

const tokenPrefix = "v1."

// Token mints a join token for contentID valid until expiry.
func Token(secret []byte, contentID string, expiry time.Time) string {
	exp := strconv.FormatInt(expiry.Unix(), 10)
	return tokenPrefix + exp + "." + base64.RawURLEncoding.EncodeToString(tokenMAC(secret, exp, contentID))
}

// VerifyToken checks tok for contentID at time now.
func VerifyToken(secret []byte, tok, contentID string, now time.Time) error {
	rest, ok := strings.CutPrefix(tok, tokenPrefix)
	if !ok {
		return ErrBadToken
	}
	exp, mac64, ok := strings.Cut(rest, ".")
	if !ok || len(exp) == 0 || len(exp) > 19 {
		return ErrBadToken
	}
	for _, c := range exp {
		if c < '0' || c > '9' { // ParseInt would take "+5" and "-5"
			return ErrBadToken
		}
	}
	expiry, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return ErrBadToken
	}
	// One spelling per MAC: Go's base64 skips CR and LF, and without
	// Strict it ignores a last character's unused bits, so other strings
	// decoded to the same MAC (the fuzzer found a token with a newline
	// in it accepted).
	if len(mac64) != base64.RawURLEncoding.EncodedLen(sha256.Size) || strings.ContainsAny(mac64, "\r\n") {
		return ErrBadToken
	}
	mac, err := base64.RawURLEncoding.Strict().DecodeString(mac64)
	if err != nil || !hmac.Equal(mac, tokenMAC(secret, exp, contentID)) {
		return ErrBadToken
	}
	if now.Unix() > expiry {
		return ErrTokenExpired
	}
	return nil
}

func tokenMAC(secret []byte, exp, contentID string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte("peercdn-join-v1\n"))
	h.Write([]byte(exp))
	h.Write([]byte("\n"))
	h.Write([]byte(contentID))
	return h.Sum(nil)
}
