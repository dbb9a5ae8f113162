package agent

import (
	"context"
	"io"
)

// CDN is how the agent reaches the CDN: net/http natively, the browser's
// fetch in wasm (supplied by wasm/, so that net/http stays out of the
// browser binary).
type CDN interface {
	// Get requests url, from byte from on when from > 0 (a Range request).
	Get(ctx context.Context, url string, from int) (*CDNResponse, error)
}

// CDNResponse is the part of an HTTP response the agent needs.
type CDNResponse struct {
	Status        int
	ContentLength int64  // -1 when unknown
	ContentRange  string // of a 206
	Body          io.ReadCloser
}
