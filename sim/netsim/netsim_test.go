package netsim

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v5/vnet"
)

// A viewer's jitter delays that viewer's packets, not the world's: with
// vnet's own MaxJitter the router sleeps holding its lock, the core router
// waits on it to deliver, and every other viewer's packets wait behind.
// At 200 viewers that made ICE time out for 8,837 of 9,250 connections.
func TestJitterDelaysOnlyItsViewer(t *testing.T) {
	w, server := worldWithServer(t)
	jittery, err := w.Viewer(Link{Jitter: 20 * time.Millisecond, NAT: Cone}, 1)
	if err != nil {
		t.Fatal(err)
	}
	calm, err := w.Viewer(Link{NAT: Cone}, 2)
	if err != nil {
		t.Fatal(err)
	}

	// The server floods the jittery viewer once it hears from it, and
	// echoes the calm viewer's pings.
	flood, err := server.ListenPacket("udp4", "203.0.113.2:9")
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	echo, err := server.ListenPacket("udp4", "203.0.113.2:7")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		buf := make([]byte, 1500)
		_, to, err := flood.ReadFrom(buf)
		if err != nil {
			return
		}
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			flood.WriteTo(make([]byte, 1000), to)
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			echo.WriteTo(buf[:n], from)
		}
	}()
	sink, err := jittery.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sink.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	if _, err := sink.WriteTo([]byte("flood me"), &net.UDPAddr{IP: net.ParseIP("203.0.113.2"), Port: 9}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)

	ping, err := calm.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ping.Close()
	rtts := pings(t, ping, 100)
	slow := len(rtts) - sort.Search(len(rtts), func(i int) bool { return rtts[i] > 10*time.Millisecond })
	t.Logf("calm round trips: p50 %v, max %v, %d over 10 ms", rtts[len(rtts)/2], rtts[len(rtts)-1], slow)
	// No delay on the calm viewer's link: a round trip is the routers'
	// processing, well under a millisecond (one slow one allowed for a
	// loaded machine). Held behind the jittery router, several took
	// 10-100 ms.
	if slow > 1 {
		t.Errorf("%d of the calm viewer's %d round trips took over 10 ms (max %v): another viewer's jitter held them up", slow, len(rtts), rtts[len(rtts)-1])
	}

	// The jittery viewer's own packets do wait: up to 20 ms, about 10
	// in the middle.
	own, err := jittery.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	rtts = pings(t, own, 50)
	if p50 := rtts[len(rtts)/2]; p50 < 3*time.Millisecond || p50 > 40*time.Millisecond {
		t.Errorf("the jittery viewer's round trip p50 is %v, not about 10 ms", p50)
	}
}

// worldWithServer starts a world, closed at the test's end, with a server
// on its core at 203.0.113.2 (no link of its own).
func worldWithServer(t *testing.T) (*World, *vnet.Net) {
	t.Helper()
	w, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	server, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"203.0.113.2"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.core.AddNet(server); err != nil {
		t.Fatal(err)
	}
	return w, server
}

// pings times n round trips from c to the echo server, sorted.
func pings(t *testing.T, c net.PacketConn, n int) []time.Duration {
	t.Helper()
	var rtts []time.Duration
	buf := make([]byte, 1500)
	for range n {
		start := time.Now()
		if _, err := c.WriteTo([]byte("ping"), &net.UDPAddr{IP: net.ParseIP("203.0.113.2"), Port: 7}); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := c.ReadFrom(buf); err != nil {
			t.Fatalf("ping %d: %v", len(rtts), err)
		}
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	return rtts
}

// A viewer's uplink queues a burst and sends it at the link's rate, as a
// modem does (a token bucket of 16 KiB, as the downlink's), and drops only
// what overflows its buffer. The policer it replaced dropped 9 of the
// first burst's 25 packets: every loss at the end of a burst cost SCTP a
// retransmission timeout of a second or more.
func TestUplinkQueuesABurst(t *testing.T) {
	w, server := worldWithServer(t)
	sink, err := server.ListenPacket("udp4", "203.0.113.2:9")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	viewer, err := w.Viewer(Link{UpKbps: 1000, NAT: Cone}, 1)
	if err != nil {
		t.Fatal(err)
	}
	c, err := viewer.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// burst sends n packets of 1,000 bytes at once and counts those that
	// arrive, and when the last did.
	burst := func(n int) (int, time.Duration) {
		start := time.Now()
		for range n {
			if _, err := c.WriteTo(make([]byte, 1000), &net.UDPAddr{IP: net.ParseIP("203.0.113.2"), Port: 9}); err != nil {
				t.Fatal(err)
			}
		}
		got, last := 0, time.Duration(0)
		buf := make([]byte, 1500)
		for {
			sink.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, _, err := sink.ReadFrom(buf); err != nil {
				return got, last
			}
			got++
			last = time.Since(start)
		}
	}
	// 25 kB at 1 Mbit/s: all of it, the bucket's 16 KiB at once and the
	// rest at the rate (about 70 ms).
	got, last := burst(25)
	t.Logf("25 packets: %d arrived, the last after %v", got, last)
	if got != 25 {
		t.Errorf("%d of a 25-packet burst arrived: the uplink dropped what its buffer holds", got)
	}
	if last < 50*time.Millisecond {
		t.Errorf("a 25 kB burst arrived in %v: faster than 1 Mbit/s past the bucket", last)
	}
	// 100 kB: the bucket and the buffer (16 KiB and 100 ms, about 29 kB)
	// and no more.
	got, _ = burst(100)
	t.Logf("100 packets: %d arrived", got)
	if got < 25 || got > 35 {
		t.Errorf("%d of a 100-packet burst arrived, want the buffer's 25-35", got)
	}
}

// TestTrackerLinkDelaysEachWay: over TrackerClient's connections a byte
// arrives half the RTT after it was sent, each way, and back-to-back
// messages share that latency rather than queueing behind each other's:
// ten echoed at once take one round trip, not ten.
func TestTrackerLinkDelaysEachWay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo
	}()
	const rtt = 200 * time.Millisecond
	dial := TrackerClient(Link{RTT: rtt}).Transport.(*http.Transport).DialContext
	c, err := dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	for i := range 10 {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, 0, 10)
	buf := make([]byte, 10)
	for len(got) < 10 {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	took := time.Since(start)
	t.Logf("10 bytes echoed in %v over a %v RTT", took, rtt)
	for i, b := range got {
		if b != byte(i) {
			t.Fatalf("echo out of order: %v", got)
		}
	}
	if took < rtt || took > rtt+rtt/2 {
		t.Fatalf("echoed in %v over a link of %v RTT: want about one RTT", took, rtt)
	}
}

// Each viewer keeps its connection to the CDN, as a browser does: ten
// viewers loading side by side need ten connections, not one per load.
func TestCDNClientsKeepTheirConnections(t *testing.T) {
	var dialled atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(make([]byte, 4<<10))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialled.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	const viewers, loads = 10, 5
	var wg sync.WaitGroup
	for range viewers {
		c := CDNClient(Link{RTT: time.Millisecond}, nil)
		wg.Go(func() {
			for range loads {
				resp, err := c.Get(srv.URL)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if n := dialled.Load(); n > viewers {
		t.Fatalf("%d viewers dialled %d connections for %d loads", viewers, n, viewers*loads)
	}
}
