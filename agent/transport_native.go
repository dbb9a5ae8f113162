//go:build !js

package agent

import (
	"context"
	"net/http"

	"github.com/peercdn/peercdn/signaling"
)

// HTTPCDN fetches with a net/http client.
type HTTPCDN struct{ Client *http.Client }

// Get implements CDN.
func (h HTTPCDN) Get(ctx context.Context, url string, first, last int64) (*CDNResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if r := rangeHeader(first, last); r != "" {
		req.Header.Set("Range", r)
	}
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	return &CDNResponse{Status: resp.StatusCode, ContentLength: resp.ContentLength,
		ContentRange: resp.Header.Get("Content-Range"), Body: resp.Body}, nil
}

func defaultTransports(c *Config) {
	if c.CDN == nil {
		c.CDN = HTTPCDN{Client: http.DefaultClient}
	}
	if c.Dial == nil {
		c.Dial = func(ctx context.Context, url, origin string) (*signaling.Client, error) {
			return signaling.Dial(ctx, url, &signaling.DialOptions{Origin: origin})
		}
	}
}
