package signaling

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Conn is a message-oriented connection to a tracker: a WebSocket. Natively
// Dial makes one with coder/websocket; the browser build supplies a thin
// one over the page's WebSocket, keeping net/http out of the wasm binary.
type Conn interface {
	// Read returns the next text frame. Cancelling ctx may close the
	// connection (coder/websocket does).
	Read(ctx context.Context) ([]byte, error)
	Write(ctx context.Context, frame []byte) error
	Close(code int, reason string) error
	CloseNow() error
}

// Client is one agent's connection to a tracker. Send and Recv may be called
// from different goroutines; Recv must not be called concurrently with itself.
type Client struct {
	conn    Conn
	welcome *Message

	writeMu sync.Mutex // one writer at a time
	closeMu sync.Mutex
	closed  bool
}

// NewClient says hello over conn and waits for the welcome; ctx bounds the
// handshake.
func NewClient(ctx context.Context, conn Conn) (*Client, error) {
	c := &Client{conn: conn}
	if err := c.Send(ctx, &Message{Type: TypeHello, V: Version}); err != nil {
		conn.CloseNow()
		return nil, err
	}
	m, err := c.Recv(ctx)
	if err != nil {
		conn.CloseNow()
		return nil, fmt.Errorf("signaling: waiting for welcome: %w", err)
	}
	if m.Type != TypeWelcome {
		conn.CloseNow()
		return nil, fmt.Errorf("signaling: expected welcome, got %s", m.Type)
	}
	c.welcome = m
	return c, nil
}

// Welcome returns the tracker's welcome: peer id, ICE servers, limits.
func (c *Client) Welcome() *Message { return c.welcome }

// PeerID is the id the tracker assigned to this connection.
func (c *Client) PeerID() string { return c.welcome.PeerID }

// Send writes one message.
func (c *Client) Send(ctx context.Context, m *Message) error {
	b, err := Encode(m)
	if err != nil {
		return fmt.Errorf("signaling: encode %s: %w", m.Type, err)
	}
	return c.SendRaw(ctx, b)
}

// SendRaw writes one frame as is. Tests and load generators use it to send
// what Encode would refuse to.
func (c *Client) SendRaw(ctx context.Context, b []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.conn.Write(ctx, b); err != nil {
		return fmt.Errorf("signaling: write: %w", err)
	}
	return nil
}

// Recv reads the next message. A tracker error message is returned as the
// message, not as an error: the connection stays usable.
func (c *Client) Recv(ctx context.Context) (*Message, error) {
	b, err := c.conn.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("signaling: read: %w", err)
	}
	return Decode(b)
}

// Join asks to join a swarm; the tracker answers with a peers message (or an
// error) carrying the same ref.
func (c *Client) Join(ctx context.Context, s Swarm, token string, slots int) error {
	return c.Send(ctx, &Message{Type: TypeJoin, Swarm: &s, Token: token, Slots: &slots})
}

// Leave leaves a swarm.
func (c *Client) Leave(ctx context.Context, s Swarm) error {
	return c.Send(ctx, &Message{Type: TypeLeave, Swarm: &s})
}

// Keepalive sends a ping every heartbeat interval the tracker asked for,
// until ctx ends or a write fails. slots and usage, if not nil, are read
// before each ping to report free connection slots and what the player got
// since the last report; usage is given the ping's ref, which the
// tracker's pong carries back (the report's acknowledgement).
func (c *Client) Keepalive(ctx context.Context, slots func() int, usage func(ref string) *Usage) error {
	every := time.Duration(c.welcome.HeartbeatMs) * time.Millisecond
	if every <= 0 {
		every = 20 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		n++
		m := &Message{Type: TypePing, Ref: "k" + strconv.Itoa(n)}
		if slots != nil {
			n := slots()
			m.Slots = &n
		}
		if usage != nil {
			m.Usage = usage(m.Ref)
		}
		if err := c.Send(ctx, m); err != nil {
			return err
		}
	}
}

// Close closes the connection with a normal closure.
func (c *Client) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.closed = true
	if err := c.conn.Close(1000, "bye"); err != nil {
		// The peer may already be gone; closing is best effort.
		c.conn.CloseNow()
	}
	return nil
}

// CloseNow drops the connection without a closing handshake.
func (c *Client) CloseNow() error { return c.conn.CloseNow() }
