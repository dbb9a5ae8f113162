//go:build !unix

package tracker

// waitReadable is a no-op where the socket cannot be peeked: the goroutine
// then waits inside the WebSocket's reader.
func (b *batchWriter) waitReadable() {}
