//go:build !unix

package tracker

// waitReadable is a no-op where the socket cannot be peeked: the goroutine
// then waits inside the WebSocket's reader.
func (b *batchWriter) waitReadable() {}

// pending says there may be bytes: without peeking, the goroutine waits.
func (b *batchWriter) pending() bool { return true }
