package netsim

import (
	"net"
	"sync"
	"time"

	"github.com/pion/transport/v5"
)

// uplink is a viewer's access link outwards: a token bucket with the
// modem's buffer behind it. What its sockets send leaves at once within the
// bucket, else waits in the buffer and leaves at the link's rate; what
// finds the buffer full is dropped. An access link is a queue both ways (the
// downlink is vnet's TBF queue). A policer, which drops every packet over
// its burst instead of delaying it, turned each burst of a congestion
// window into losses, and each loss at the end of a burst into an SCTP
// retransmission timeout of at least a second: stalls that real modems,
// which queue, do not cause.
type uplink struct {
	perByte time.Duration // serialisation time of a byte
	burst   time.Duration // the bucket: what leaves at once, in time at the rate
	buffer  time.Duration // the most the queue holds, in time at the rate

	mu      sync.Mutex
	free    time.Time // when the link has sent everything queued
	q       []departure
	sending bool // run is writing packets it took off q: none may pass them
	wake    chan struct{}
	done    chan struct{}
}

type departure struct {
	at   time.Time
	send func()
}

// upBuffer and upBurst are the uplink's buffer and bucket, as the
// downlink's TBF queue: 16 KiB leave at once, then 100 ms more wait.
const (
	upBuffer = 100 * time.Millisecond
	upBurst  = 16 << 10
)

func newUplink(kbps int) *uplink {
	if kbps <= 0 {
		return nil
	}
	perByte := time.Duration(float64(time.Second) * 8 / float64(kbps*1000))
	u := &uplink{perByte: perByte, burst: upBurst * perByte, buffer: upBuffer + upBurst*perByte,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go u.run()
	return u
}

// send passes a packet of len(p) bytes to write: at once while the bucket
// holds it and nothing waits (no goroutine, no copy: the common case costs
// the simulator little), else a copy of p once it has left, or never when
// the buffer is full. It reports len(p), as a socket does whatever the
// modem then drops; the caller may reuse p.
func (u *uplink) send(p []byte, write func([]byte)) (int, error) {
	now := time.Now()
	u.mu.Lock()
	if u.free.Before(now) {
		u.free = now
	}
	if u.free.Sub(now) > u.buffer {
		u.mu.Unlock()
		return len(p), nil // dropped
	}
	u.free = u.free.Add(time.Duration(len(p)) * u.perByte)
	at := u.free.Add(-u.burst)
	if len(u.q) == 0 && !u.sending && !at.After(now) {
		u.mu.Unlock()
		write(p)
		return len(p), nil
	}
	b := append([]byte(nil), p...)
	u.q = append(u.q, departure{at: at, send: func() { write(b) }})
	u.mu.Unlock()
	select {
	case u.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (u *uplink) run() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		u.mu.Lock()
		now := time.Now()
		var due []departure
		for len(u.q) > 0 && !u.q[0].at.After(now) {
			due = append(due, u.q[0])
			u.q = u.q[1:]
		}
		wait := time.Hour
		if len(u.q) > 0 {
			wait = u.q[0].at.Sub(now)
		}
		u.sending = len(due) > 0
		u.mu.Unlock()
		if len(due) > 0 {
			for _, d := range due {
				d.send()
			}
			u.mu.Lock()
			u.sending = false
			u.mu.Unlock()
			continue
		}
		t.Reset(wait)
		select {
		case <-u.done:
			return
		case <-u.wake:
		case <-t.C:
		}
	}
}

func (u *uplink) close() { close(u.done) }

// shapedNet is a viewer's network whose UDP sockets send through its
// uplink.
type shapedNet struct {
	transport.Net
	up *uplink
}

func (s shapedNet) ListenUDP(network string, addr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := s.Net.ListenUDP(network, addr)
	if err != nil {
		return nil, err
	}
	return &shapedUDP{UDPConn: c, up: s.up}, nil
}

func (s shapedNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := s.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	return &shapedPacket{PacketConn: c, up: s.up}, nil
}

type shapedUDP struct {
	transport.UDPConn
	up *uplink
}

func (c *shapedUDP) WriteTo(p []byte, addr net.Addr) (int, error) {
	return c.up.send(p, func(b []byte) { _, _ = c.UDPConn.WriteTo(b, addr) })
}

func (c *shapedUDP) WriteToUDP(p []byte, addr *net.UDPAddr) (int, error) {
	return c.up.send(p, func(b []byte) { _, _ = c.UDPConn.WriteToUDP(b, addr) })
}

func (c *shapedUDP) Write(p []byte) (int, error) {
	return c.up.send(p, func(b []byte) { _, _ = c.UDPConn.Write(b) })
}

func (c *shapedUDP) WriteMsgUDP(p, oob []byte, addr *net.UDPAddr) (int, int, error) {
	o := append([]byte(nil), oob...)
	n, err := c.up.send(p, func(b []byte) { _, _, _ = c.UDPConn.WriteMsgUDP(b, o, addr) })
	return n, len(oob), err
}

type shapedPacket struct {
	net.PacketConn
	up *uplink
}

func (c *shapedPacket) WriteTo(p []byte, addr net.Addr) (int, error) {
	return c.up.send(p, func(b []byte) { _, _ = c.PacketConn.WriteTo(b, addr) })
}
