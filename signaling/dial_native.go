//go:build !js

package signaling

import (
	"context"
	"net/http"

	"github.com/coder/websocket"
)

func dial(ctx context.Context, url string, opts *DialOptions) (*websocket.Conn, error) {
	o := &websocket.DialOptions{}
	if opts.Origin != "" {
		o.HTTPHeader = http.Header{"Origin": []string{opts.Origin}}
	}
	c, resp, err := websocket.Dial(ctx, url, o)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	return c, err
}
