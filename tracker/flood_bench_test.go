package tracker

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/peercdn/peercdn/signaling"
)

// BenchmarkRoundTripUnderPingFlood measures what four sockets flooding
// WebSocket pings do to other viewers: each iteration is one viewer's
// ping -> pong round trip through the tracker, on an idle node and under
// the flood (run both side by side and compare p99-ms):
//
//	go test ./tracker -run '^$' -bench RoundTripUnderPingFlood -benchtime 400x -count 5
//
// The flooders come from another address (127.0.0.2), as they would, and
// dial again as soon as the tracker closes them for strikes.
func BenchmarkRoundTripUnderPingFlood(b *testing.B) {
	for _, flooders := range []int{0, 4} {
		name := "idle"
		if flooders > 0 {
			name = "flood-4"
		}
		b.Run(name, func(b *testing.B) {
			n := startNode(b, nil)
			if flooders > 0 {
				// The flood runs in another process at the lowest CPU
				// priority: an attacker's own CPU is not the tracker's,
				// though here the two share the machine's cores.
				cmd := exec.Command("nice", "-n", "19", os.Args[0])
				cmd.Env = append(os.Environ(), floodEnv+"="+strings.TrimPrefix(n.hs.URL, "http://"))
				cmd.Stdout = os.Stderr
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				defer func() { cmd.Process.Kill(); cmd.Wait() }()
			}
			probe := n.dial(b, "")
			time.Sleep(200 * time.Millisecond) // the flood under way
			rtts := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				send(b, probe, &signaling.Message{Type: signaling.TypePing, Ref: "p"})
				expect(b, probe, signaling.TypePong, "")
				rtts = append(rtts, time.Since(start))
				// A viewer's pace, within messages_per_second.
				if wait := 60*time.Millisecond - time.Since(start); wait > 0 && i < b.N-1 {
					time.Sleep(wait)
				}
			}
			b.StopTimer()
			slices.Sort(rtts)
			ms := func(q float64) float64 {
				return float64(rtts[min(len(rtts)-1, int(q*float64(len(rtts))))]) / 1e6
			}
			b.ReportMetric(ms(0.5), "p50-ms")
			b.ReportMetric(ms(0.99), "p99-ms")
			if flooders > 0 {
				strikes := testutil.ToFloat64(n.srv.m.rejects.WithLabelValues("strikes"))
				boxed := testutil.ToFloat64(n.srv.m.rejects.WithLabelValues("ip_penalty"))
				if strikes == 0 {
					b.Fatal("the flood was never closed for strikes: did it run?")
				}
				b.ReportMetric(strikes, "strike-closes")
				b.ReportMetric(boxed, "boxed-dials")
			}
		})
	}
}

// floodEnv names the tracker a flooding child process attacks.
const floodEnv = "PEERCDN_TEST_FLOOD"

// runFlooders runs four ping floods against addr until killed.
func runFlooders(addr string) {
	var pings, redials atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			floodPings(context.Background(), addr, &pings, &redials)
		}()
	}
	wg.Wait()
}

// floodPings says hello and sends WebSocket pings as fast as the socket
// takes them, never reading; closed for strikes, it dials again (5 ms after
// a refusal).
func floodPings(ctx context.Context, addr string, pings, redials *atomic.Int64) {
	var burst []byte
	for range 256 {
		f := ws.MaskFrameInPlace(ws.NewPingFrame([]byte("flood")))
		bb, _ := ws.CompileFrame(f)
		burst = append(burst, bb...)
	}
	hello := ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewTextFrame(bytes.Clone(helloJSON)))) // masking is in place
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	for ctx.Err() == nil {
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		redials.Add(1)
		stop := context.AfterFunc(ctx, func() { nc.Close() })
		nc.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			// Refused: try again soon, not at once, which would only
			// run this machine out of ports (TIME_WAIT) for everyone.
			time.Sleep(5 * time.Millisecond)
		} else {
			// Drain what the tracker says, so that only the flood costs.
			go io.Copy(io.Discard, nc)
			if _, err := nc.Write(hello); err == nil {
				for ctx.Err() == nil {
					if _, err := nc.Write(burst); err != nil {
						break
					}
					pings.Add(256)
				}
			}
		}
		stop()
		nc.Close()
	}
}
