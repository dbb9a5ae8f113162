//go:build js && wasm

package signaling

import (
	"context"

	"github.com/coder/websocket"
)

// dial in the browser: the page sets Origin itself.
func dial(ctx context.Context, url string, _ *DialOptions) (*websocket.Conn, error) {
	c, _, err := websocket.Dial(ctx, url, nil)
	return c, err
}
