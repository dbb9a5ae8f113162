package agent

import (
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/peercdn/peercdn/peerwire"
)

// Live is the part of Config a running agent takes changes to (a page's
// peercdn.configure): a nil field keeps its value.
type Live struct {
	// ConsumeOnly stops or resumes serving peers (a tab hidden, a
	// connection turning metered).
	ConsumeOnly *bool
	// UploadBytesPerSecond caps upload to all peers; 0 lifts the cap.
	UploadBytesPerSecond *int
	// MaxPeers bounds connected peers per swarm (1..64). Lowered, the
	// peers already connected stay until they leave.
	MaxPeers *int
	// MaxWait and CDNSafety are Config's, for the next loads.
	MaxWait   *time.Duration
	CDNSafety *time.Duration
}

// liveConfig holds Live's values, read on every use.
type liveConfig struct {
	consumeOnly atomic.Bool
	maxPeers    atomic.Int64
	maxWait     atomic.Int64
	cdnSafety   atomic.Int64
}

func (a *Agent) initLive() {
	a.live.consumeOnly.Store(a.cfg.ConsumeOnly)
	a.seeding.told = a.cfg.ConsumeOnly // what a new channel's peer is told
	a.live.maxPeers.Store(int64(a.cfg.MaxPeers))
	a.live.maxWait.Store(int64(a.cfg.MaxWait))
	a.live.cdnSafety.Store(int64(a.cfg.CDNSafety))
	// Always a limiter, unlimited without a cap, so that a cap can be set
	// and lifted while uploads wait on it.
	a.up = rate.NewLimiter(rate.Inf, peerwire.MaxChunk)
	a.setUploadCap(a.cfg.UploadBytesPerSecond)
}

func (a *Agent) setUploadCap(bps int) {
	if bps <= 0 {
		a.up.SetLimit(rate.Inf)
		return
	}
	a.up.SetBurst(max(bps, peerwire.MaxChunk))
	a.up.SetLimit(rate.Limit(bps))
}

func (a *Agent) consumeOnly() bool        { return a.live.consumeOnly.Load() }
func (a *Agent) maxPeers() int            { return int(a.live.maxPeers.Load()) }
func (a *Agent) maxWait() time.Duration   { return time.Duration(a.live.maxWait.Load()) }
func (a *Agent) cdnSafety() time.Duration { return time.Duration(a.live.cdnSafety.Load()) }

// Configure changes a running agent's Live settings, checking them all
// before applying any.
func (a *Agent) Configure(l Live) error {
	switch {
	case l.UploadBytesPerSecond != nil && *l.UploadBytesPerSecond < 0:
		return fmt.Errorf("%w: negative UploadBytesPerSecond", ErrConfig)
	case l.MaxPeers != nil && (*l.MaxPeers < 1 || *l.MaxPeers > 64):
		return fmt.Errorf("%w: MaxPeers %d outside 1..64", ErrConfig, *l.MaxPeers)
	case l.MaxWait != nil && *l.MaxWait <= 0:
		return fmt.Errorf("%w: MaxWait must be positive", ErrConfig)
	case l.CDNSafety != nil && *l.CDNSafety < 0:
		return fmt.Errorf("%w: negative CDNSafety", ErrConfig)
	}
	if l.ConsumeOnly != nil {
		a.live.consumeOnly.Store(*l.ConsumeOnly)
		defer a.reviewSeeding()
	}
	if l.UploadBytesPerSecond != nil {
		a.setUploadCap(*l.UploadBytesPerSecond)
	}
	if l.MaxPeers != nil {
		a.live.maxPeers.Store(int64(*l.MaxPeers))
	}
	if l.MaxWait != nil {
		a.live.maxWait.Store(int64(*l.MaxWait))
	}
	if l.CDNSafety != nil {
		a.live.cdnSafety.Store(int64(*l.CDNSafety))
	}
	a.log.Debug("configured", "consumeOnly", a.consumeOnly(), "maxPeers", a.maxPeers(), "maxWait", a.maxWait(), "cdnSafety", a.cdnSafety())
	return nil
}
