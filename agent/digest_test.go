package agent

import (
	"crypto/sha256"
	"testing"
)

// TestDigest: the agent's SHA-256 (the browser's Web Crypto under
// GOOS=js) is Go's.
func TestDigest(t *testing.T) {
	for _, n := range []int{0, 1, 64, 215 << 10} {
		b := segment(uint64(n))[:min(n, segSize)]
		if got, want := digest(b), sha256.Sum256(b); got != want {
			t.Errorf("%d bytes: %x, want %x", n, got, want)
		}
	}
}

// BenchmarkDigest checks a 215 kB segment (the field stream's 360p) with
// the agent's SHA-256 and, beside it, Go's. In WebAssembly
// (GOOS=js GOARCH=wasm go test -exec "$(go env GOROOT)/lib/wasm/go_js_wasm_exec"
// -run '^$' -bench Digest ./agent, under Node's V8) the agent's is the
// browser's Web Crypto.
func BenchmarkDigest(b *testing.B) {
	seg := segment(1)[:215<<10]
	for _, c := range []struct {
		name string
		f    func([]byte) [32]byte
	}{{"agent", digest}, {"go", sha256.Sum256}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(seg)))
			for b.Loop() {
				c.f(seg)
			}
		})
	}
}
