//go:build !js

package agent

import "crypto/sha256"

// digest is the SHA-256 of b (digest_js.go has the browser's).
func digest(b []byte) [32]byte { return sha256.Sum256(b) }
