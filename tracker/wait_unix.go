//go:build unix

package tracker

import "syscall"

// waitReadable blocks until the connection has bytes to read, without
// reading them. A goroutine parked here has a shallow stack, which the
// runtime shrinks at the next GC; parked deep inside the WebSocket's frame
// reader it kept 8 KiB. Idle viewers are most of a node's connections, so
// this is a third of its memory per connection.
func (b *batchWriter) waitReadable() {
	if b.br == nil || b.br.Buffered() > 0 || (b.prefix != nil && b.prefix.Len() > 0) {
		return
	}
	sc, ok := b.nc.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	var one [1]byte
	rc.Read(func(fd uintptr) bool {
		// Peek without blocking: the poller only waits after "would block"
		// (its readiness is edge-triggered). Errors, EOF included, return
		// at once and surface in the WebSocket's own read that follows.
		_, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN && err != syscall.EINTR
	})
}

// pending reports whether there are bytes to read (or the socket is at
// its end): buffered, or in the socket.
func (b *batchWriter) pending() bool {
	if b.br == nil || b.br.Buffered() > 0 || (b.prefix != nil && b.prefix.Len() > 0) {
		return true
	}
	sc, ok := b.nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	ready := true
	var one [1]byte
	rc.Control(func(fd uintptr) {
		_, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ready = err != syscall.EAGAIN
	})
	return ready
}

// rawControl runs f with the socket's descriptor, which cannot be closed
// meanwhile.
func (b *batchWriter) rawControl(f func(fd int)) error {
	sc, ok := b.nc.(syscall.Conn)
	if !ok {
		return syscall.EINVAL
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { f(int(fd)) })
}
