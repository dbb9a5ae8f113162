package tracker

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peercdn/peercdn/signaling"
)

func TestDefaultConfigIsValid(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeConfig(t *testing.T) {
	c := DefaultConfig()
	err := DecodeConfig(strings.NewReader(`
listen: 127.0.0.1:9000
allowed_origins: ["*.example.com"]
idle_timeout: 45s
ice_servers:
  - urls: ["turn:turn.example.com:3478"]
    username: u
    credential: p
`), &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9000" || c.IdleTimeout != 45*time.Second || c.ICEServers[0].Credential != "p" || c.Suggestions != 8 {
		t.Fatalf("decoded %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	c := DefaultConfig()
	err := DecodeConfig(strings.NewReader("listen: :1\nmax_peers_per_swarn: 5\n"), &c)
	if err == nil || !strings.Contains(err.Error(), "unknown key max_peers_per_swarn") {
		t.Fatalf("typo: %v", err)
	}
	for field, mutate := range map[string]func(*Config){
		"listen":              func(c *Config) { c.Listen = "nope" },
		"suggestions":         func(c *Config) { c.Suggestions = 0 },
		"max_message_bytes":   func(c *Config) { c.MaxMessageBytes = 1 << 30 },
		"token_secret":        func(c *Config) { c.TokenSecret = "short" },
		"ice_servers":         func(c *Config) { c.ICEServers = []signaling.ICEServer{{URLs: []string{"http://x"}}} },
		"trusted_proxies":     func(c *Config) { c.TrustedProxies = []string{"10.0.0.1"} },
		"idle_timeout":        func(c *Config) { c.IdleTimeout = 0 },
		"messages_per_second": func(c *Config) { c.MessagesPerSecond = 0 },
		"allowed_origins":     func(c *Config) { c.AllowedOrigins = []string{"a b"} },
		"networks":            func(c *Config) { c.Networks = []NetworkGroup{{Name: "office", CIDRs: []string{"10.1.0.0"}}} },
	} {
		c := DefaultConfig()
		mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), field+":") {
			t.Errorf("%s: got %v", field, err)
		}
	}
}

// A key renamed in this release still works under its old name, and is
// named for a warning.
func TestDeprecatedKeys(t *testing.T) {
	c := DefaultConfig()
	if err := DecodeConfig(strings.NewReader("notary_origins: [\"https://cdn.example/live/\"]\nnotary_cdns: [\"https://cdn2.example/\"]\n"), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://cdn2.example/", "https://cdn.example/live/"}; !slices.Equal(c.NotaryCDNs, want) {
		t.Fatalf("notary_cdns %v, want %v", c.NotaryCDNs, want)
	}
	if got := c.DeprecatedKeys(); len(got) != 1 || !strings.Contains(got[0], "notary_origins") {
		t.Fatalf("deprecated keys %v", got)
	}
}
