// Command wasm is the peercdn agent compiled for the browser
// (GOOS=js GOARCH=wasm); see main_js.go. Natively it builds to nothing.
package main
