package tracker

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/peercdn/peercdn/signaling"
)

func unlimited(c *Config) {
	c.MessagesPerSecond, c.MessageBurst = 1e9, 1e6
	c.IPMessagesPerSecond, c.IPMessageBurst = 1e9, 1e6
	c.MaxConnsPerIP = 1e6
}

// BenchmarkClusterRelay relays 900-byte offers between two clients: on a
// single node (the baseline), and between two nodes through each store.
func BenchmarkClusterRelay(b *testing.B) {
	b.Run("single-node", func(b *testing.B) {
		n := startNode(b, unlimited)
		benchRelay(b, n.dial(b, ""), n.dial(b, ""))
	})
	for _, st := range stores(b) {
		b.Run(st.name+"-two-nodes", func(b *testing.B) {
			n1, n2 := startClustered(b, st, unlimited), startClustered(b, st, unlimited)
			benchRelay(b, n1.dial(b, ""), n2.dial(b, ""))
		})
	}
}

func benchRelay(b *testing.B, a, from *client) {
	ctx := context.Background()
	join(b, a, live, "")
	join(b, from, live, "")
	sdp := make([]byte, 900)
	for i := range sdp {
		sdp[i] = 'a' + byte(i%26)
	}
	raw, _ := signaling.Encode(&signaling.Message{Type: signaling.TypeOffer, Swarm: &live, To: a.PeerID(), OfferID: "o", SDP: string(sdp)})
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	const window = 32 // in flight, so the benchmark measures throughput
	inflight := 0
	for i := 0; i < b.N; i++ {
		if err := from.SendRaw(ctx, raw); err != nil {
			b.Fatal(err)
		}
		inflight++
		if inflight == window {
			for ; inflight > window/2; inflight-- {
				if m := recv(b, a); m.Type != signaling.TypeOffer {
					b.Fatalf("got %+v", m)
				}
			}
		}
	}
	for ; inflight > 0; inflight-- {
		recv(b, a)
	}
}

// BenchmarkClusterJoin is join (with suggestions) and leave, from 16
// clients at once, on a single node and on a node of each store's cluster.
func BenchmarkClusterJoin(b *testing.B) {
	b.Run("single-node", func(b *testing.B) { benchJoin(b, startNode(b, unlimited)) })
	for _, st := range stores(b) {
		b.Run(st.name+"-store", func(b *testing.B) {
			n := startClustered(b, st, unlimited)
			startClustered(b, st, unlimited) // a second node: a real cluster
			benchJoin(b, n)
		})
	}
}

func benchJoin(b *testing.B, n *testNode) {
	const clients = 16
	cs := make([]*client, clients)
	for i := range cs {
		cs[i] = n.dial(b, "")
	}
	// Members to be suggested, so joins do real matching.
	for _, c := range cs[:8] {
		join(b, c, live, "")
	}
	var next atomic.Int64
	b.SetParallelism(clients / 2) // GOMAXPROCS 2 here: 16 goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := cs[next.Add(1)-1]
		ctx := context.Background()
		for i := 0; pb.Next(); i++ {
			sw := signaling.Swarm{Content: "/bench.m3u8", Rendition: fmt.Sprint(i % 4)}
			slots := 4
			if err := c.Send(ctx, &signaling.Message{Type: signaling.TypeJoin, Swarm: &sw, Slots: &slots}); err != nil {
				b.Error(err)
				return
			}
			if m := <-c.in; m.Type != signaling.TypePeers {
				b.Errorf("join: %+v", m)
				return
			}
			if err := c.Send(ctx, &signaling.Message{Type: signaling.TypeLeave, Swarm: &sw}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
