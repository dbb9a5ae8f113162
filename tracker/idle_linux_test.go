//go:build linux

package tracker

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/peercdn/peercdn/signaling"
)

// Idle connections are parked in the poller and hold no goroutine; they
// wake when a message arrives.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	const clients = 200
	n := startNode(t, func(c *Config) { c.MaxConnsPerIP = clients })
	n.srv.transport.Poller.Warm()
	runtime.GC()
	before := runtime.NumGoroutine()
	cs := make([]*client, clients)
	for i := range cs {
		cs[i] = n.dial(t, "") // each with a reader goroutine of its own, here in the test
		join(t, cs[i], signaling.Swarm{Content: "/idle.m3u8"}, "")
	}
	// The test's clients hold a reader goroutine each; the node none for
	// an idle connection (a goroutine each would double the count).
	limit := before + clients + clients/10
	eventually(t, 5*time.Second, fmt.Sprintf("goroutines at most %d", limit), func() bool {
		return runtime.NumGoroutine() <= limit
	})
	// A parked connection wakes on a message.
	send(t, cs[0], &signaling.Message{Type: signaling.TypePing})
	expect(t, cs[0], signaling.TypePong, "")
}
