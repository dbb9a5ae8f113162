package agent

import (
	"context"
	"io"
	"strconv"
	"time"

	"github.com/peercdn/peercdn/signaling"
)

// CDN is how the agent reaches the CDN: net/http natively, the browser's
// fetch in wasm (supplied by wasm/, so that net/http stays out of the
// browser binary).
type CDN interface {
	// Get requests url's bytes first to last (last < 0: to the end), with
	// a Range request unless that is the whole response (0, -1).
	Get(ctx context.Context, url string, first, last int64) (*CDNResponse, error)
}

// CDNResponse is the part of an HTTP response the agent needs.
type CDNResponse struct {
	Status        int
	ContentLength int64  // -1 when unknown
	ContentRange  string // of a 206
	Body          io.ReadCloser
	// HeadersAt is when the headers reached the page, where the transport
	// knows it better than Get's return (the browser's); zero: that.
	HeadersAt time.Time
}

// arrival is a response body that knows when its last byte reached the
// page: the browser's, read whole, before it was copied into Go, as an
// XHR's load event is timed. Copying and allocating a segment's bytes in
// the wasm (a garbage collection there stops everything) are the agent's
// costs, not the network's, and they halved the bandwidth hls.js was told.
type arrival interface{ arrived() time.Time }

// rangeHeader is the Range header for bytes first to last (last < 0: to
// the end), or "" for the whole response.
func rangeHeader(first, last int64) string {
	switch {
	case last >= 0:
		return signaling.ByteRange{First: first, Last: last}.Header()
	case first > 0:
		return "bytes=" + strconv.FormatInt(first, 10) + "-"
	}
	return ""
}
