// Package jspromise waits on JavaScript Promises from Go goroutines in the
// browser build (GOOS=js GOARCH=wasm); it is empty elsewhere.
package jspromise
