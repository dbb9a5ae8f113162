package loadgen

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// wtClient is one WebTorrent tracker client (bittorrent-tracker's, as
// p2p-media-loader uses it).
type wtClient struct {
	g      *gen
	ws     *websocket.Conn
	rng    *rand.Rand
	t0     time.Time
	peerID string

	mu     sync.Mutex
	sent   map[string]time.Time // offer_id -> when its announce was sent
	rngMu  sync.Mutex           // rng is used by the reader and the announcer
	hsDone bool
}

type wtOfferOut struct {
	OfferID string          `json:"offer_id"`
	Offer   json.RawMessage `json:"offer"`
}

type wtAnnounce struct {
	Action     string          `json:"action"`
	InfoHash   string          `json:"info_hash"`
	PeerID     string          `json:"peer_id"`
	NumWant    int             `json:"numwant"`
	Event      string          `json:"event,omitempty"`
	Uploaded   int             `json:"uploaded"`
	Downloaded int             `json:"downloaded"`
	Left       int             `json:"left"`
	Offers     []wtOfferOut    `json:"offers,omitempty"`
	Answer     json.RawMessage `json:"answer,omitempty"`
	OfferID    string          `json:"offer_id,omitempty"`
	ToPeerID   string          `json:"to_peer_id,omitempty"`
}

type wtIn struct {
	Action     string          `json:"action"`
	Interval   *int            `json:"interval"`
	Complete   *int            `json:"complete"`
	Incomplete *int            `json:"incomplete"`
	Offer      json.RawMessage `json:"offer"`
	Answer     json.RawMessage `json:"answer"`
	OfferID    string          `json:"offer_id"`
	PeerID     string          `json:"peer_id"`
	InfoHash   string          `json:"info_hash"`
	Failure    *string         `json:"failure reason"`
}

func (c *wtClient) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.g.c.requests.Add(1)
	return c.ws.Write(ctx, websocket.MessageText, b)
}

func (c *wtClient) announce(ih, event string) error {
	c.rngMu.Lock()
	left := 50
	if c.g.cfg.Mode == Compat && c.rng.Float64() < 0.25 {
		event, left = "completed", 0 // aquatic's seeders
	}
	m := wtAnnounce{Action: "announce", InfoHash: ih, PeerID: c.peerID, NumWant: c.g.cfg.Offers,
		Event: event, Left: left, Offers: make([]wtOfferOut, c.g.cfg.Offers)}
	for i := range m.Offers {
		m.Offers[i] = wtOfferOut{OfferID: randID(c.rng), Offer: c.g.offerJSON}
	}
	c.rngMu.Unlock()
	now := time.Now()
	c.mu.Lock()
	for _, o := range m.Offers {
		c.sent[o.OfferID] = now
	}
	c.mu.Unlock()
	c.g.c.offersSent.Add(int64(len(m.Offers)))
	return c.send(&m)
}

func (c *wtClient) answer(in *wtIn) error {
	c.g.c.answersSent.Add(1)
	return c.send(&wtAnnounce{Action: "announce", InfoHash: in.InfoHash, PeerID: c.peerID,
		OfferID: in.OfferID, ToPeerID: in.PeerID, Answer: c.g.answerJSON})
}

// read reads and tallies one message; it returns the parsed message.
func (c *wtClient) read(ctx context.Context) (*wtIn, error) {
	_, b, err := c.ws.Read(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var in wtIn
	if json.Unmarshal(b, &in) != nil {
		c.g.c.got("garbage")
		return &in, nil
	}
	switch {
	case in.Failure != nil:
		c.g.c.got("error")
		c.g.c.errors.Add(1)
	case in.Offer != nil:
		c.g.c.got("offer")
		c.g.c.offersRecv.Add(1)
	case in.Answer != nil:
		c.g.c.got("answer")
		c.g.c.answersRecv.Add(1)
		c.mu.Lock()
		at, ok := c.sent[in.OfferID]
		delete(c.sent, in.OfferID)
		c.mu.Unlock()
		if ok && c.g.cfg.Mode == Realistic {
			c.g.lat.Record(now.Sub(at))
		}
	case in.Action == "scrape":
		c.g.c.got("scrape")
	default:
		c.g.c.got("announce")
		if in.Complete != nil && in.Incomplete != nil {
			others := *in.Complete + *in.Incomplete - 1
			c.g.c.offersExpected.Add(int64(max(min(c.g.cfg.Offers, others), 0)))
		}
		if !c.hsDone {
			c.hsDone = true
			c.g.hs.Record(now.Sub(c.t0))
		}
	}
	return &in, nil
}

// run returns true when the tracker ended the connection.
func (c *wtClient) run(ctx context.Context) bool {
	c.peerID = randID(c.rng)
	c.sent = map[string]time.Time{}
	if c.g.cfg.Mode == Compat {
		return c.closedLoop(ctx)
	}
	ih := c.g.picker.names[c.g.picker.pick(c.rng)]
	if c.announce(ih, "started") != nil {
		return true
	}
	go func() {
		t := time.NewTicker(c.g.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if c.g.stopped() || c.announce(ih, "") != nil {
					return
				}
			case <-c.g.stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		in, err := c.read(ctx)
		if err != nil {
			return true
		}
		if in.Offer != nil && in.Failure == nil {
			if c.answer(in) != nil {
				return true
			}
		}
	}
}

// closedLoop is aquatic_ws's load test: one request in flight; any message
// that arrives lets the next one go; an offer is answered in it.
func (c *wtClient) closedLoop(ctx context.Context) bool {
	var pending *wtIn
	for {
		var err error
		sentAt := time.Now()
		switch {
		case c.g.stopped():
		case pending != nil:
			err = c.answer(pending)
		default:
			err = c.announce(c.g.picker.names[c.g.picker.pick(c.rng)], "started")
		}
		if err != nil {
			return true
		}
		in, err := c.read(ctx)
		if err != nil {
			return true
		}
		c.g.lat.Record(time.Since(sentAt))
		pending = nil
		if in.Offer != nil && in.Failure == nil {
			pending = in
		}
	}
}
