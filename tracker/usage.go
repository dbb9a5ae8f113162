package tracker

import (
	"time"

	"github.com/peercdn/peercdn/signaling"
)

// Viewers' usage reports (signaling.Usage, sent with pings) are what the
// tracker knows of offload and rebuffering: they feed the
// peercdn_viewer_* counters, each swarm's figures in /stats.json, and the
// dashboard. A report is a viewer's word, so it is bounded by the time
// since the connection's previous one.

// usageSlack is time a report may cover beyond the time since the previous
// one: bytes an agent got while reconnecting, or before its first ping.
const usageSlack = 60 * time.Second

// usageMaxRate bounds a report's bytes of each kind per second: 1 Gbit/s,
// more than any viewer's player takes or gives.
const usageMaxRate = 125e6

// usageMaxPeerRate bounds a report's peer connections of each outcome per
// second: an agent opens a few per swarm, and a browser 500 in a tab's life.
const usageMaxPeerRate = 10

// usage counts a report; false refuses it as implausible.
func (c *conn) usage(u *signaling.Usage, now time.Time) bool {
	span := now.Sub(c.usageAt) + usageSlack
	maxBytes := int64(span.Seconds() * usageMaxRate)
	maxPeers := int64(span.Seconds() * usageMaxPeerRate)
	if u.CDNBytes > maxBytes || u.P2PBytes > maxBytes || u.UploadBytes > maxBytes || u.StallMs > span.Milliseconds() ||
		u.PeersConnected > maxPeers || u.PeersFailed > maxPeers {
		return false
	}
	// The viewing time the report covers, for the cohorts' per-hour
	// figures: the time since the previous one, up to two heartbeats (a
	// viewer that paused reports nothing until it plays again).
	watch := min(now.Sub(c.usageAt), 2*c.s.cfg.IdleTimeout/3)
	control := c.control.Load()
	if c.cohortAt.Load() > c.pingAt.UnixNano() {
		// The rollout moved the viewer since its last ping: these bytes
		// were got in the cohort it left (the control cohort's offload
		// stays 0, not the P2P bytes of its last moments on P2P). Its
		// agent reports at once when told, so little comes after.
		control = !control
	}
	c.usageAt = now
	cohort := cohortOf(control)
	m := c.s.m
	m.viewerCDN.Add(float64(u.CDNBytes))
	m.viewerP2P.Add(float64(u.P2PBytes))
	m.viewerUp.Add(float64(u.UploadBytes))
	m.viewerStall.Add(float64(u.StallMs) / 1000)
	m.viewerPeersOK.Add(float64(u.PeersConnected))
	m.viewerPeersFail.Add(float64(u.PeersFailed))
	cm := &m.cohorts[cohort]
	cm.cdn.Add(float64(u.CDNBytes))
	cm.p2p.Add(float64(u.P2PBytes))
	cm.stall.Add(float64(u.StallMs) / 1000)
	cm.watch.Add(watch.Seconds())
	_, apart := c.s.rollout.Load().Origins[c.origin]
	c.s.hub.addUsage(c.peer, u, cohort, watch, apart)
	return true
}

// addUsage adds a report to the node's totals and to one swarm of p's (a
// viewer of one title is in one swarm per rendition it plays: the bytes are
// the title's either way).
// With apart (p's site is set apart in the rollout) the cohort's figures
// are the site's too.
func (h *hub) addUsage(p *peer, u *signaling.Usage, cohort int, watch time.Duration, apart bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.usage.Add(*u)
	h.cohorts[cohort].usage.Add(*u)
	h.cohorts[cohort].watchMs += watch.Milliseconds()
	if apart {
		f := h.sites[p.conn.origin]
		if f == nil && len(h.sites) < maxRolloutOrigins {
			if h.sites == nil {
				h.sites = map[string]*[numCohorts]cohortFigures{}
			}
			f = new([numCohorts]cohortFigures)
			h.sites[p.conn.origin] = f
		}
		if f != nil {
			f[cohort].usage.Add(*u)
			f[cohort].watchMs += watch.Milliseconds()
		}
	}
	for k := range p.swarms {
		if sw := h.swarms[k]; sw != nil {
			sw.usage.Add(*u)
			return
		}
	}
}
