package tracker

import (
	"sync"
	"time"
)

// penaltyBox keeps addresses whose connections keep being closed for
// strikes (floods) from dialing straight back: a flood closed in a few
// milliseconds would otherwise cost a TCP accept, an HTTP request and an
// upgrade each time, hundreds of times a second. An address is refused
// (429, rejects{reason="ip_penalty"}) after penaltyFree strike closes that
// have not yet been forgiven (one per penaltyForgive), for 1 s, doubling per
// further close up to penaltyMax. An office whose one browser misbehaves
// once is never refused.
type penaltyBox struct {
	mu sync.Mutex
	m  map[string]*penalty
}

type penalty struct {
	closes int       // strike closes not yet forgiven
	from   time.Time // forgiveness counts from here
	until  time.Time // refused until
}

const (
	penaltyFree    = 3
	penaltyForgive = 20 * time.Second
	penaltyMax     = time.Minute
	// penaltyEntries bounds the box; past it old entries go, and if none
	// can, a new address is not boxed (the box fails open).
	penaltyEntries = 1 << 16
)

// closed records a strike close of a connection from ip.
func (b *penaltyBox) closed(ip string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]*penalty{}
	}
	p := b.m[ip]
	if p == nil {
		if len(b.m) >= penaltyEntries {
			b.pruneLocked(now)
			if len(b.m) >= penaltyEntries {
				return
			}
		}
		p = &penalty{}
		b.m[ip] = p
	}
	p.closes, p.from = forgive(p.closes, p.from, now, penaltyForgive)
	p.closes++
	if p.closes >= penaltyFree {
		p.until = now.Add(min(penaltyMax, time.Second<<min(p.closes-penaltyFree, 6)))
	}
}

// refused reports whether ip is boxed now, and for how long still.
func (b *penaltyBox) refused(ip string, now time.Time) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.m[ip]
	if p == nil || !now.Before(p.until) {
		return 0, false
	}
	return p.until.Sub(now), true
}

// pruneLocked drops entries that are no longer refused and fully forgiven.
func (b *penaltyBox) pruneLocked(now time.Time) {
	for ip, p := range b.m {
		if closes, _ := forgive(p.closes, p.from, now, penaltyForgive); closes == 0 && !now.Before(p.until) {
			delete(b.m, ip)
		}
	}
}

// forgive forgives one of n every per since from, and returns what is left
// and the time the next forgiveness counts from.
func forgive(n int, from, now time.Time, per time.Duration) (int, time.Time) {
	if n == 0 || from.IsZero() {
		return n, now
	}
	k := int(now.Sub(from) / per)
	if k >= n {
		return 0, now
	}
	return n - k, from.Add(time.Duration(k) * per)
}
