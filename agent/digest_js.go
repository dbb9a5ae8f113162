//go:build js && wasm

package agent

import (
	"crypto/sha256"
	"syscall/js"

	"github.com/peercdn/peercdn/internal/jspromise"
)

// digest is the SHA-256 of b, by the browser's Web Crypto, which hashes in
// native code. Go's own has no assembly in WebAssembly: in the field
// harness's profile of a viewer's main thread (FIELD_PROFILE) it took
// 0.87 s of a run, the browser's digest 0.57 s with its copy (one run
// each). It waits for a promise: never call it from a JS callback. Where
// Web Crypto is missing (a page not in a secure context), Go's.
func digest(b []byte) [32]byte {
	if jsSubtle.Truthy() {
		u8 := jsUint8Array.New(len(b))
		js.CopyBytesToJS(u8, b)
		if v, err := jspromise.Await(jsSubtle.Call("digest", "SHA-256", u8)); err == nil {
			var sum [32]byte
			if js.CopyBytesToGo(sum[:], jsUint8Array.New(v)) == len(sum) {
				return sum
			}
		}
	}
	return sha256.Sum256(b)
}

// jsSubtle is Web Crypto (crypto.subtle), looked up once, as the other JS
// constructors the agent uses are (rtc_js.go); undefined where missing.
var jsSubtle = func() js.Value {
	if c := js.Global().Get("crypto"); c.Truthy() {
		return c.Get("subtle")
	}
	return js.Undefined()
}()
