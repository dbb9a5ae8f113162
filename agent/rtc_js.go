//go:build js && wasm

package agent

import "github.com/pion/webrtc/v4"

// newAPI: in the browser, the browser's WebRTC decides candidates.
func newAPI(*Config) *webrtc.API { return webrtc.NewAPI() }
