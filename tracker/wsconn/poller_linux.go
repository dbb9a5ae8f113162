//go:build linux

package wsconn

import (
	"os"
	"sync"
	"syscall"
)

// Poller holds idle connections without a goroutine each; a server
// shares one among its connections (Options.Poller). A connection
// with nothing to read registers its socket here (level-triggered, one
// shot) and its goroutine ends; when bytes arrive, or the connection is
// being closed, a goroutine starts reading it again. A goroutine parked
// on a socket costs at least a 4 KiB stack, a third of what an idle
// viewer cost: most of a node's viewers are idle most of the time.
//
// It uses its own epoll set beside the Go runtime's: the runtime's is
// edge-triggered and not ours to read. The set's own descriptor is in the
// runtime's, so the loop waits like any network read: no thread blocked
// in epoll_wait, and a wake-up is scheduled as promptly as a socket's.
type Poller struct {
	once   sync.Once
	err    error
	epfd   int
	file   *os.File // epfd, non-blocking, in the runtime's poller
	wake   [2]int   // a pipe in the set: a byte in it ends the loop
	mu     sync.Mutex
	parked map[uint64]*Conn
	nextID uint64
	done   chan struct{}
}

func NewPoller() *Poller { return &Poller{parked: map[uint64]*Conn{}} }

// Warm starts the poller's goroutine ahead of the first idle connection
// (tests count goroutines).
func (p *Poller) Warm() { p.start() }

func (p *Poller) start() error {
	p.once.Do(func() {
		p.epfd, p.err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if p.err != nil {
			return
		}
		// Non-blocking, so the runtime's poller takes it (os.NewFile below).
		if p.err = syscall.SetNonblock(p.epfd, true); p.err != nil {
			syscall.Close(p.epfd)
			return
		}
		if p.err = syscall.Pipe2(p.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); p.err != nil {
			syscall.Close(p.epfd)
			return
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // id 0: the pipe
		if p.err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); p.err != nil {
			syscall.Close(p.epfd)
			syscall.Close(p.wake[0])
			syscall.Close(p.wake[1])
			return
		}
		p.file = os.NewFile(uintptr(p.epfd), "idle-poller")
		p.done = make(chan struct{})
		go p.loop()
	})
	return p.err
}

// park registers c's socket and reports whether it did; the caller's
// goroutine must then end. It does not park a connection being closed:
// its goroutine must finish it.
func (p *Poller) park(c *Conn) bool {
	if p.start() != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.ending() {
		return false
	}
	if c.pollID == 0 {
		p.nextID++
		c.pollID = p.nextID
	}
	op := syscall.EPOLL_CTL_MOD
	if !c.polled {
		op = syscall.EPOLL_CTL_ADD
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd: int32(c.pollID), Pad: int32(c.pollID >> 32)}
	var err error
	// Inside Control the socket cannot be closed, so its descriptor cannot
	// be another socket's by the time epoll sees it.
	if cerr := c.rawControl(func(fd int) { err = syscall.EpollCtl(p.epfd, op, fd, &ev) }); cerr != nil || err != nil {
		return false
	}
	c.polled = true
	p.parked[c.pollID] = c
	return true
}

// kick restarts c's goroutine if it is parked: it is being closed.
func (p *Poller) kick(c *Conn) {
	p.mu.Lock()
	_, ok := p.parked[c.pollID]
	if ok {
		delete(p.parked, c.pollID)
	}
	p.mu.Unlock()
	if ok {
		go c.run()
	}
}

func (p *Poller) loop() {
	defer close(p.done)
	rc, err := p.file.SyscallConn()
	if err != nil {
		return
	}
	events := make([]syscall.EpollEvent, 256)
	for {
		var n int
		var werr error
		// Take what is ready without blocking; when nothing is, the
		// runtime parks this goroutine until the set becomes readable.
		err := rc.Read(func(fd uintptr) bool {
			for {
				if n, werr = syscall.EpollWait(int(fd), events, 0); werr != syscall.EINTR {
					return werr != nil || n > 0
				}
			}
		})
		if err != nil || werr != nil {
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				return // Close
			}
			p.mu.Lock()
			c, ok := p.parked[id]
			delete(p.parked, id)
			p.mu.Unlock()
			if ok {
				go c.run()
			}
		}
	}
}

// Close ends the loop. Parked connections are closed by the server's
// drain, which kicks each.
func (p *Poller) Close() {
	p.once.Do(func() { p.err = syscall.EINVAL }) // not started: never will be
	if p.done == nil {
		return
	}
	syscall.Write(p.wake[1], []byte{1})
	<-p.done
	p.file.Close() // and with it epfd
	syscall.Close(p.wake[0])
	syscall.Close(p.wake[1])
}
