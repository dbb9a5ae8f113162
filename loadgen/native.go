package loadgen

import (
	"context"
	"time"

	"github.com/peercdn/peercdn/signaling"
)

// nativeClient is one peercdn agent's signaling, without WebRTC.
type nativeClient struct {
	client
	limits signaling.Limits
	joined map[string]bool
	list   []string // joined swarms, for picking one
	// offeredTo counts offers to each peer in the current offer window: a
	// tracker keeps every negotiation between two peers for its offer_ttl
	// and refuses an eighth (with a strike), so the flood, which would
	// offer to the same few peers hundreds of times a minute, keeps under
	// that as a real agent does (it negotiates with a peer once).
	offeredTo map[string]*offerWindow
}

// offerWindow is the offers made to one peer since start.
type offerWindow struct {
	n     int
	start time.Time
}

const (
	offerWindowLen = 60 * time.Second // the tracker's default offer_ttl
	offersPerPeer  = 6                // under its 8 per sender and receiver
)

func (c *nativeClient) send(m *signaling.Message) error {
	b, err := signaling.Encode(m)
	if err != nil {
		return err
	}
	return c.write(b)
}

func (c *nativeClient) read(ctx context.Context) (*signaling.Message, error) {
	b, err := c.readMessage(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	m, err := signaling.Decode(b)
	if err != nil {
		c.g.c.got("garbage")
		return &signaling.Message{}, nil
	}
	c.g.c.got(string(m.Type))
	switch m.Type {
	case signaling.TypeError:
		c.g.c.errors.Add(1)
	case signaling.TypeOffer:
		c.g.c.offersRecv.Add(1)
	case signaling.TypeAnswer:
		c.answered(m.OfferID, now)
	}
	return m, nil
}

// offerTo sends one offer to each listed peer, up to Offers.
func (c *nativeClient) offerTo(m *signaling.Message) error {
	if c.offeredTo == nil {
		c.offeredTo = map[string]*offerWindow{}
	}
	now := time.Now()
	sent := 0
	for _, to := range m.Peers {
		if sent >= c.g.cfg.Offers {
			break
		}
		w := c.offeredTo[to]
		if w == nil || now.Sub(w.start) > offerWindowLen {
			w = &offerWindow{start: now}
			c.offeredTo[to] = w
		}
		if w.n >= offersPerPeer {
			continue
		}
		w.n++
		sent++
		id := randID(c.rng)
		c.offered(time.Now(), id)
		c.g.c.offersExpected.Add(1)
		if err := c.send(&signaling.Message{Type: signaling.TypeOffer, Swarm: m.Swarm, To: to, OfferID: id, SDP: c.g.sdp}); err != nil {
			return err
		}
	}
	return nil
}

func (c *nativeClient) answer(m *signaling.Message) error {
	c.g.c.answersSent.Add(1)
	return c.send(&signaling.Message{Type: signaling.TypeAnswer, Swarm: m.Swarm, To: m.From, OfferID: m.OfferID, SDP: c.g.sdp})
}

// join joins swarm i, or asks for more peers when already in it (or in as
// many swarms as the tracker allows).
func (c *nativeClient) join(i int, ref string) error {
	name := c.g.picker.names[i]
	slots := 8
	if c.joined[name] || (c.limits.MaxSwarms > 0 && len(c.list) >= c.limits.MaxSwarms) {
		if !c.joined[name] {
			name = c.list[c.rng.IntN(len(c.list))]
		}
		return c.send(&signaling.Message{Type: signaling.TypePeers, Ref: ref, Swarm: &signaling.Swarm{Content: name}})
	}
	c.joined[name] = true
	c.list = append(c.list, name)
	return c.send(&signaling.Message{Type: signaling.TypeJoin, Ref: ref, Swarm: &signaling.Swarm{Content: name}, Slots: &slots})
}

func (c *nativeClient) run(ctx context.Context) bool {
	c.joined = map[string]bool{}
	slots := 8
	if c.send(&signaling.Message{Type: signaling.TypeHello, V: signaling.Version, Slots: &slots}) != nil {
		return true
	}
	w, err := c.read(ctx)
	if err != nil || w.Type != signaling.TypeWelcome {
		return true
	}
	if c.g.cfg.Mode == Realistic {
		c.g.hs.Record(time.Since(c.t0))
	}
	if w.Limits != nil {
		c.limits = *w.Limits
	}
	heartbeat := time.Duration(max(w.HeartbeatMs, 1000)) * time.Millisecond
	if c.g.cfg.Mode == Compat {
		return c.closedLoop(ctx, heartbeat)
	}
	swarm := c.g.picker.pick(c.rng)
	if c.join(swarm, "") != nil {
		return true
	}
	go func() {
		ping, again := time.NewTicker(heartbeat), time.NewTicker(c.g.cfg.Interval)
		defer ping.Stop()
		defer again.Stop()
		for {
			var err error
			select {
			case <-ping.C:
				err = c.send(&signaling.Message{Type: signaling.TypePing})
			case <-again.C:
				if !c.g.stopped() {
					err = c.send(&signaling.Message{Type: signaling.TypePeers, Swarm: &signaling.Swarm{Content: c.g.picker.names[swarm]}})
				}
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		m, err := c.read(ctx)
		if err != nil {
			return true
		}
		switch m.Type {
		case signaling.TypePeers:
			err = c.offerTo(m)
		case signaling.TypeOffer:
			err = c.answer(m)
		}
		if err != nil {
			return true
		}
	}
}

// closedLoop is the native protocol's flood: a join (or a request for
// peers) for a gamma-drawn swarm, offers to the peers the reply lists, and
// the next request when that reply comes; every offer received is answered
// as it is read. The loop closes on the request's own reply, not on any
// message as the WebTorrent mix does: here each reply fans out into up to
// Offers relayed offers, so a request per message read would multiply the
// messages in flight until the tracker closes its slowest readers.
func (c *nativeClient) closedLoop(ctx context.Context, heartbeat time.Duration) bool {
	if !c.waitOpen(ctx) {
		return false
	}
	const ref = "r" // marks the replies (and errors) that close the loop
	var peers *signaling.Message
	lastPing := time.Now()
	ready := true
	var sentAt time.Time
	for {
		if ready && !c.g.stopped() {
			var err error
			if peers != nil {
				err = c.offerTo(peers)
				peers = nil
			}
			if err == nil && time.Since(lastPing) > heartbeat {
				lastPing = time.Now()
				sentAt = lastPing
				err = c.send(&signaling.Message{Type: signaling.TypePing, Ref: ref})
			} else if err == nil {
				sentAt = time.Now()
				err = c.join(c.g.picker.pick(c.rng), ref)
			}
			if err != nil {
				return true
			}
			ready = false
		}
		m, err := c.read(ctx)
		if err != nil {
			return true
		}
		switch {
		case m.Type == signaling.TypeOffer:
			if err := c.answer(m); err != nil {
				return true
			}
		case m.Ref == ref:
			c.g.lat.Record(time.Since(sentAt))
			ready = true
			if m.Type == signaling.TypePeers && len(m.Peers) > 0 {
				peers = m
			}
		}
	}
}
