//go:build !js

package signaling

import (
	"context"
	"fmt"
	"net/http"

	"github.com/coder/websocket"
)

// DialOptions configures Dial. The zero value is usable.
type DialOptions struct {
	// Origin is sent as the Origin header. The tracker keeps swarms of
	// different origins apart, so a native load-test viewer sets a page's
	// origin to join its swarms. Default: none.
	Origin string
	// ReadLimit bounds one incoming frame. Default: MaxFrameLen.
	ReadLimit int64
	// Header adds HTTP headers to the upgrade request (for instance a
	// proxy's X-Forwarded-For, in tests). Default: none.
	Header http.Header
	// HTTPClient makes the upgrade request: its transport's TLS settings
	// apply to wss:// (a private CA's roots). Default: http.DefaultClient.
	HTTPClient *http.Client
}

// Dial connects to the tracker at url (ws:// or wss://, path /ws), says hello
// and waits for the welcome. ctx bounds the whole handshake.
func Dial(ctx context.Context, url string, opts *DialOptions) (*Client, error) {
	if opts == nil {
		opts = &DialOptions{}
	}
	o := &websocket.DialOptions{HTTPHeader: opts.Header.Clone(), HTTPClient: opts.HTTPClient}
	if opts.Origin != "" {
		if o.HTTPHeader == nil {
			o.HTTPHeader = http.Header{}
		}
		o.HTTPHeader.Set("Origin", opts.Origin)
	}
	ws, resp, err := websocket.Dial(ctx, url, o)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("signaling: dial %s: %w", url, err)
	}
	limit := opts.ReadLimit
	if limit <= 0 {
		limit = MaxFrameLen
	}
	ws.SetReadLimit(limit)
	return NewClient(ctx, wsConn{ws})
}

// wsConn adapts coder/websocket to Conn.
type wsConn struct{ c *websocket.Conn }

func (w wsConn) Read(ctx context.Context) ([]byte, error) {
	_, b, err := w.c.Read(ctx)
	return b, err
}

func (w wsConn) Write(ctx context.Context, b []byte) error {
	return w.c.Write(ctx, websocket.MessageText, b)
}

func (w wsConn) Close(code int, reason string) error {
	return w.c.Close(websocket.StatusCode(code), reason)
}

func (w wsConn) CloseNow() error { return w.c.CloseNow() }

// CloseStatus returns the WebSocket close code in err, or -1.
func CloseStatus(err error) int { return int(websocket.CloseStatus(err)) }
