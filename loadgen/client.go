package loadgen

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// client is what a simulated viewer has in either protocol: its socket,
// writes counted as requests, reads into one reused buffer, and its offers
// in flight, for the offer->answer latency.
type client struct {
	g   *gen
	ws  *websocket.Conn
	rng *rand.Rand
	t0  time.Time // when its dial started
	buf bytes.Buffer

	mu   sync.Mutex
	sent map[string]time.Time // offer_id -> when it went out
}

func (c *client) init(g *gen, ws *websocket.Conn, rng *rand.Rand, t0 time.Time) {
	c.g, c.ws, c.rng, c.t0, c.sent = g, ws, rng, t0, map[string]time.Time{}
}

// write sends one request.
func (c *client) write(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.g.c.requests.Add(1)
	return c.ws.Write(ctx, websocket.MessageText, b)
}

// readMessage reads one message into the client's buffer; the bytes are
// good until the next read.
func (c *client) readMessage(ctx context.Context) ([]byte, error) {
	_, r, err := c.ws.Reader(ctx)
	if err != nil {
		return nil, err
	}
	c.buf.Reset()
	if _, err := c.buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return c.buf.Bytes(), nil
}

// offered records offers as sent at now.
func (c *client) offered(now time.Time, ids ...string) {
	c.mu.Lock()
	for _, id := range ids {
		c.sent[id] = now
	}
	c.mu.Unlock()
	c.g.c.offersSent.Add(int64(len(ids)))
}

// answered counts an answer to offer id, and in the realistic mode its
// offer->answer latency.
func (c *client) answered(id string, now time.Time) {
	c.g.c.answersRecv.Add(1)
	c.mu.Lock()
	at, ok := c.sent[id]
	delete(c.sent, id)
	c.mu.Unlock()
	if ok && c.g.cfg.Mode == Realistic {
		c.g.lat.Record(now.Sub(at))
	}
}

// waitOpen holds a compat connection until every connection is open, so
// the flood meets all of them; false if the run ends first.
func (c *client) waitOpen(ctx context.Context) bool {
	select {
	case <-c.g.open:
		return true
	case <-ctx.Done():
		return false
	}
}
