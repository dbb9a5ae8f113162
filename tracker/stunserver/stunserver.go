// Package stunserver answers STUN binding requests (RFC 8489) on UDP, so
// that viewers behind NATs learn the address their peers can reach them at
// from the tracker they already use, with nothing else to run.
//
// A STUN port is a reflection target: anyone can send it a request with a
// forged source address. So it answers only well-formed binding requests,
// never with more bytes than the request carried plus the mapped address,
// and at most PerIPRate answers a second to one address, whatever the
// requests claim.
package stunserver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/time/rate"
)

// Result is what became of one datagram, for metrics.
type Result string

const (
	Answered    Result = "answered"
	RateLimited Result = "rate_limited"
	Malformed   Result = "malformed"   // not a STUN message, or a broken one
	Unsupported Result = "unsupported" // STUN, but not a plain binding request
)

// Limits of one server. The zero value takes the defaults.
type Limits struct {
	// PerIPRate and PerIPBurst bound answers to one source address (a
	// browser sends a few binding requests per connection attempt and a
	// keepalive every ~25 s). Default 20/s, burst 40.
	PerIPRate  float64
	PerIPBurst int
	// Rate and Burst bound all answers. Default 20,000/s, burst 20,000.
	Rate  float64
	Burst int
	// Addresses bounds the per-address state; past it the oldest is
	// forgotten. Default 65,536.
	Addresses int
}

func (l *Limits) defaults() {
	if l.PerIPRate == 0 {
		l.PerIPRate, l.PerIPBurst = 20, 40
	}
	if l.Rate == 0 {
		l.Rate, l.Burst = 20000, 20000
	}
	if l.Addresses == 0 {
		l.Addresses = 1 << 16
	}
}

// maxRequest bounds a request: a binding request with the attributes a
// browser sends is well under it (RFC 8489's 548-byte guidance).
const maxRequest = 548

// Server answers binding requests on one socket.
type Server struct {
	pc     net.PacketConn
	limits Limits
	count  func(Result)

	all *rate.Limiter
	mu  sync.Mutex
	per map[netip.Addr]*rate.Limiter
	old map[netip.Addr]*rate.Limiter // the previous generation, still honoured
}

// New serves on pc; count, if not nil, is told each datagram's result.
func New(pc net.PacketConn, limits Limits, count func(Result)) *Server {
	limits.defaults()
	if count == nil {
		count = func(Result) {}
	}
	return &Server{pc: pc, limits: limits, count: count,
		all: rate.NewLimiter(rate.Limit(limits.Rate), limits.Burst),
		per: map[netip.Addr]*rate.Limiter{}}
}

// Addr is the socket's address.
func (s *Server) Addr() net.Addr { return s.pc.LocalAddr() }

// Serve answers until ctx ends or the socket is closed.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.pc.Close() })
	defer stop()
	buf := make([]byte, 1500)
	out := make([]byte, 0, 64)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		ap := ua.AddrPort()
		resp, res := Answer(out[:0], buf[:n], ap)
		if res == Answered && !s.allow(ap.Addr().Unmap(), time.Now()) {
			res = RateLimited
		}
		s.count(res)
		if res == Answered {
			s.pc.WriteTo(resp, from)
		}
	}
}

// allow spends one answer of addr's budget and of the server's.
func (s *Server) allow(addr netip.Addr, now time.Time) bool {
	s.mu.Lock()
	l := s.per[addr]
	if l == nil {
		if l = s.old[addr]; l == nil {
			l = rate.NewLimiter(rate.Limit(s.limits.PerIPRate), s.limits.PerIPBurst)
		}
		if len(s.per) >= s.limits.Addresses/2 {
			// Two generations: an address seen lately keeps its budget,
			// and the state never passes Addresses.
			s.old, s.per = s.per, make(map[netip.Addr]*rate.Limiter, len(s.per))
		}
		s.per[addr] = l
	}
	s.mu.Unlock()
	return l.AllowN(now, 1) && s.all.AllowN(now, 1)
}

// Answer appends to dst the answer to req from the address from, if req is
// a well-formed binding request. The answer is never longer than req plus
// the mapped address (12 bytes for IPv4, 24 for IPv6).
func Answer(dst, req []byte, from netip.AddrPort) ([]byte, Result) {
	if len(req) < 20 || len(req) > maxRequest || req[0]&0xc0 != 0 {
		return dst, Malformed
	}
	m := &stun.Message{Raw: req}
	if err := m.Decode(); err != nil || 20+int(m.Length) != len(req) {
		return dst, Malformed
	}
	if m.Type != stun.BindingRequest {
		return dst, Unsupported
	}
	fingerprint := false
	for _, a := range m.Attributes {
		switch {
		case a.Type == stun.AttrFingerprint:
			if stun.Fingerprint.Check(m) != nil {
				return dst, Malformed
			}
			fingerprint = true
		case a.Type == stun.AttrMessageIntegrity || a.Type == stun.AttrMessageIntegritySHA256 || a.Type == stun.AttrUsername:
			// Credentials this server never issued.
			return dst, Unsupported
		case a.Type.Required() && a.Type != stun.AttrPriority && a.Type != stun.AttrUseCandidate:
			// A comprehension-required attribute it does not know: RFC
			// 8489 would send a 420 error; silence costs the sender more.
			return dst, Unsupported
		}
	}
	ip := from.Addr().Unmap()
	resp := &stun.Message{Raw: dst}
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: net.IP(ip.AsSlice()), Port: int(from.Port())},
	}
	if fingerprint {
		setters = append(setters, stun.Fingerprint)
	}
	if err := resp.Build(setters...); err != nil {
		return dst, Malformed
	}
	mapped := 12
	if ip.Is6() {
		mapped = 24
	}
	if len(resp.Raw) > len(req)+mapped {
		return dst, Unsupported // never more than the request brought
	}
	return resp.Raw, Answered
}
