//go:build js && wasm

package agent

import (
	"crypto/sha256"
	"syscall/js"

	"github.com/peercdn/peercdn/internal/jspromise"
)

// digest is the SHA-256 of b, by the browser's Web Crypto. Go's own has no
// assembly in WebAssembly: it took 9 ms of the page's main thread for each
// 215 kB segment checked, 0.9 s in every 100 s of a viewer's (the field
// harness's profile, FIELD_PROFILE), where the browser's runs natively and
// off the main thread. It waits for a promise: never call it from a JS
// callback. Where Web Crypto is missing (a page not in a secure context),
// Go's.
func digest(b []byte) [32]byte {
	if c := js.Global().Get("crypto"); c.Truthy() && c.Get("subtle").Truthy() {
		subtle := c.Get("subtle")
		u8 := jsUint8Array.New(len(b))
		js.CopyBytesToJS(u8, b)
		if v, err := jspromise.Await(subtle.Call("digest", "SHA-256", u8)); err == nil {
			var sum [32]byte
			if js.CopyBytesToGo(sum[:], jsUint8Array.New(v)) == len(sum) {
				return sum
			}
		}
	}
	return sha256.Sum256(b)
}
