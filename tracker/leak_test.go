package tracker

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/tracker/cluster"
)

// TestThousandClientsLeaveNoTrace: 1,000 clients connect, join, relay and
// disconnect; goroutines, peers, swarms and connections return to where
// they started.
func TestThousandClientsLeaveNoTrace(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 connections: not in -short")
	}
	const clients, swarms = 1000, 10
	n := startNode(t, func(c *Config) { c.MaxConnsPerIP = clients; c.IPMessagesPerSecond = 1e6; c.IPMessageBurst = 1e6 })
	n.srv.transport.Poller.Warm() // its goroutine lives as long as the node
	runtime.GC()
	before := runtime.NumGoroutine()

	cs := make([]*client, clients)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 100)
	for i := range cs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cs[i] = n.dial(t, "")
		})
	}
	wg.Wait()
	var sent atomic.Int64
	for i, c := range cs {
		sw := signaling.Swarm{Content: fmt.Sprintf("/title-%d.m3u8", i%swarms)}
		m := join(t, c, sw, "")
		if m.Type != signaling.TypePeers {
			t.Fatalf("join %d: %+v", i, m)
		}
		if len(m.Peers) > 0 {
			send(t, c, &signaling.Message{Type: signaling.TypeOffer, Swarm: &sw, To: m.Peers[0], OfferID: "o", SDP: "v=0"})
			sent.Add(1)
		}
	}
	if p, s, conns := n.srv.Counts(); p != clients || s != swarms || conns != clients {
		t.Fatalf("at the peak: %d peers, %d swarms, %d conns", p, s, conns)
	}
	var got int64
	deadline := time.After(10 * time.Second)
	for got < sent.Load() {
		for _, c := range cs {
		inner:
			for {
				select {
				case m := <-c.in:
					if m.Type == signaling.TypeOffer {
						got++
					}
				default:
					break inner
				}
			}
		}
		select {
		case <-deadline:
			t.Fatalf("%d of %d offers arrived", got, sent.Load())
		case <-time.After(10 * time.Millisecond):
		}
	}
	for _, c := range cs {
		wg.Go(func() {
			c.Close()
			<-c.closed
		})
	}
	wg.Wait()
	eventually(t, 10*time.Second, "peers, swarms and connections to return to 0", func() bool {
		p, s, conns := n.srv.Counts()
		return p == 0 && s == 0 && conns == 0
	})
	eventually(t, 10*time.Second, fmt.Sprintf("goroutines to return to %d", before), func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// BenchmarkRelay measures an offer from one agent to another through a real
// tracker over loopback WebSockets, SDP of about 900 bytes.
func BenchmarkRelay(b *testing.B) {
	n := startNode(b, func(c *Config) {
		c.MessagesPerSecond = 1e9
		c.MessageBurst = 1e6
		c.IPMessagesPerSecond = 1e9
		c.IPMessageBurst = 1e6
	})
	ctx := context.Background()
	a, bb := n.dial(b, ""), n.dial(b, "")
	join(b, a, live, "")
	join(b, bb, live, "")
	sdp := make([]byte, 900)
	for i := range sdp {
		sdp[i] = 'a' + byte(i%26)
	}
	msg := &signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: a.PeerID(), OfferID: "o", SDP: string(sdp)}
	raw, _ := signaling.Encode(msg)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	// Keep a window of 32 in flight so the benchmark measures throughput.
	const window = 32
	inflight := 0
	for i := 0; i < b.N; i++ {
		if err := bb.SendRaw(ctx, raw); err != nil {
			b.Fatal(err)
		}
		inflight++
		if inflight == window {
			for ; inflight > window/2; inflight-- {
				if m := <-a.in; m.Type != signaling.TypeOffer {
					b.Fatalf("got %+v", m)
				}
			}
		}
	}
	for ; inflight > 0; inflight-- {
		<-a.in
	}
}

// BenchmarkRoute is the tracker's own share of a relay: the swarm and offer
// checks, without sockets.
func BenchmarkRoute(b *testing.B) {
	cfg := DefaultConfig()
	h := newHub(&cfg, newMetrics(newRegistry()), cluster.NewNodeID(), false)
	k := cluster.Key{Swarm: live}
	p1, p2 := newPeer("a", nil), newPeer("b", nil)
	h.add(p1)
	h.add(p2)
	now := time.Now()
	h.join(p1, k)
	h.join(p2, k)
	h.route(p1, k, signaling.TypeOffer, "b", "o", now)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, code := h.route(p2, k, signaling.TypeCandidate, "a", "o", now); code != "" {
			b.Fatal(code)
		}
	}
}

func TestRouteDoesNotAllocate(t *testing.T) {
	cfg := DefaultConfig()
	h := newHub(&cfg, newMetrics(newRegistry()), cluster.NewNodeID(), false)
	k := cluster.Key{Swarm: live}
	p1, p2 := newPeer("a", nil), newPeer("b", nil)
	h.add(p1)
	h.add(p2)
	now := time.Now()
	h.join(p1, k)
	h.join(p2, k)
	h.route(p1, k, signaling.TypeOffer, "b", "o", now)
	allocs := testing.AllocsPerRun(100, func() {
		h.route(p2, k, signaling.TypeCandidate, "a", "o", now)
		h.route(p2, k, signaling.TypeAnswer, "a", "o", now)
	})
	if allocs != 0 {
		t.Fatalf("route allocates %.1f times per call", allocs)
	}
}
