//go:build js && wasm

package agent

// defaultTransports: the browser build has none of its own; wasm/ supplies
// Config.CDN and Config.Dial over fetch and WebSocket.
func defaultTransports(*Config) {}
