package loadgen

import (
	"context"
	"strconv"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// wtClient is one WebTorrent tracker client (bittorrent-tracker's, as
// p2p-media-loader uses it).
type wtClient struct {
	client
	peerID string
	rngMu  sync.Mutex // rng is used by the reader and the announcer
	hsDone bool
}

type wtIn struct {
	Action     string         `json:"action"`
	Interval   *int           `json:"interval"`
	Complete   *int           `json:"complete"`
	Incomplete *int           `json:"incomplete"`
	Offer      jsontext.Value `json:"offer"`
	Answer     jsontext.Value `json:"answer"`
	OfferID    string         `json:"offer_id"`
	PeerID     string         `json:"peer_id"`
	InfoHash   string         `json:"info_hash"`
	Failure    *string        `json:"failure reason"`
}

// The generator shares the cores with the server it measures, so it
// builds its messages by appending (ids are alphanumeric, see randID).
func (c *wtClient) announce(ih, event string) error {
	c.rngMu.Lock()
	left := "50"
	if c.g.cfg.Mode == Compat && c.rng.Float64() < 0.25 {
		event, left = "completed", "0" // aquatic's seeders
	}
	ids := make([]string, c.g.cfg.Offers)
	for i := range ids {
		ids[i] = randID(c.rng)
	}
	c.rngMu.Unlock()
	b := make([]byte, 0, 256+len(ids)*(len(c.g.offerJSON)+48))
	b = append(b, `{"action":"announce","info_hash":"`...)
	b = append(b, ih...)
	b = append(b, `","peer_id":"`...)
	b = append(b, c.peerID...)
	b = append(b, `","numwant":`...)
	b = strconv.AppendInt(b, int64(c.g.cfg.Offers), 10)
	if event != "" {
		b = append(b, `,"event":"`...)
		b = append(b, event...)
		b = append(b, '"')
	}
	b = append(b, `,"uploaded":0,"downloaded":0,"left":`...)
	b = append(b, left...)
	b = append(b, `,"offers":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"offer_id":"`...)
		b = append(b, id...)
		b = append(b, `","offer":`...)
		b = append(b, c.g.offerJSON...)
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	c.offered(time.Now(), ids...)
	return c.write(b)
}

func (c *wtClient) answer(in *wtIn) error {
	c.g.c.answersSent.Add(1)
	b := make([]byte, 0, 160+len(c.g.answerJSON))
	b = append(b, `{"action":"announce","info_hash":`...)
	b, _ = jsontext.AppendQuote(b, in.InfoHash)
	b = append(b, `,"peer_id":"`...)
	b = append(b, c.peerID...)
	b = append(b, `","to_peer_id":`...)
	b, _ = jsontext.AppendQuote(b, in.PeerID)
	b = append(b, `,"offer_id":`...)
	b, _ = jsontext.AppendQuote(b, in.OfferID)
	b = append(b, `,"answer":`...)
	b = append(b, c.g.answerJSON...)
	b = append(b, '}')
	return c.write(b)
}

// read reads and tallies one message; it returns the parsed message.
func (c *wtClient) read(ctx context.Context) (*wtIn, error) {
	b, err := c.readMessage(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var in wtIn
	if jsonv2.Unmarshal(b, &in) != nil {
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
		c.answered(in.OfferID, now)
	case in.Action == "scrape":
		c.g.c.got("scrape")
	default:
		c.g.c.got("announce")
		if in.Complete != nil && in.Incomplete != nil {
			others := *in.Complete + *in.Incomplete - 1
			c.g.c.offersExpected.Add(int64(max(min(c.g.cfg.Offers, others), 0)))
		}
		if !c.hsDone && c.g.cfg.Mode == Realistic {
			c.hsDone = true
			c.g.hs.Record(now.Sub(c.t0))
		}
	}
	return &in, nil
}

// run returns true when the tracker ended the connection.
func (c *wtClient) run(ctx context.Context) bool {
	c.peerID = randID(c.rng)
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
	if !c.waitOpen(ctx) {
		return false
	}
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
