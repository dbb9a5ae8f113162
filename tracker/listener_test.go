package tracker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// serveLimited serves a tracker as `peercdn serve` does: its Listener and
// HTTPServer.
func serveLimited(t *testing.T, mutate func(*Config)) string {
	t.Helper()
	srv := newTestServer(t, mutate)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer(srv.Handler())
	go hs.Serve(srv.Listener(ln))
	t.Cleanup(func() {
		// Shutdown waits for connections still answering (a 431 lingers
		// half a second before closing), which the leak check would see.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
		hs.Close()
	})
	return ln.Addr().String()
}

// TestOneIPHoldsBoundedConnections: connections that never upgrade (idle
// keep-alives, unfinished headers) count against the address: past
// max_conns_per_ip+16 new ones are closed at once, and a place comes back
// when one closes.
func TestOneIPHoldsBoundedConnections(t *testing.T) {
	addr := serveLimited(t, func(c *Config) { c.MaxConnsPerIP = 4 })
	const limit = 4 + preUpgradeSlack
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for range limit {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	closedAtOnce := func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return true
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err = c.Read(make([]byte, 1))
		return err == io.EOF || (err != nil && !errors.Is(err, os.ErrDeadlineExceeded))
	}
	if !closedAtOnce() {
		t.Fatalf("connection %d from one address was kept open", limit+1)
	}
	held[0].Close()
	time.Sleep(100 * time.Millisecond)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after a place freed up: %v %v", resp, err)
	}
}

// TestHeaderBlockIsBounded: a header block past 16 KiB is refused (431)
// instead of being read up to Go's default 1 MB.
func TestHeaderBlockIsBounded(t *testing.T) {
	addr := serveLimited(t, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d for a 64 KiB header, want 431", resp.StatusCode)
	}
}

// TestStrikesDecay: a churny swarm's honest viewer, relaying to a peer that
// has just left every 9 s for 30 minutes (200 strikes in all), never
// reaches max_strikes (50); a burst of 50 within 5 s counts in full
// (simulated time).
func TestStrikesDecay(t *testing.T) {
	const max = 50
	start := time.Unix(1_800_000_000, 0)
	strike := func(strikes int, from, now time.Time) (int, time.Time) {
		strikes, from = decayStrikes(strikes, from, now)
		return strikes + 1, from
	}
	strikes, from := 0, time.Time{}
	for i := range 200 {
		now := start.Add(time.Duration(i) * 9 * time.Second)
		if strikes, from = strike(strikes, from, now); strikes >= max {
			t.Fatalf("closed after %v of well-paced mistakes", now.Sub(start))
		}
	}
	strikes, from = 0, time.Time{}
	for i := range max {
		strikes, from = strike(strikes, from, start.Add(time.Duration(i)*100*time.Millisecond))
	}
	if strikes != max {
		t.Fatalf("a burst of %d strikes within 5 s counted %d", max, strikes)
	}
}

// TestHeaderFloodMemory: 600 connections from one address, each sending an
// unfinished header block as large as it may (what took a node to 1.2 GB
// when headers could be 1 MB), cost the node a bounded heap: the budget in
// listener.go is about 1.6 MB, asserted here with room for the runtime's
// own noise.
func TestHeaderFloodMemory(t *testing.T) {
	addr := serveLimited(t, nil)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	before := heap()
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	line := "X-Pad: " + strings.Repeat("a", 1000) + "\r\n"
	block := "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat(line, (MaxHeaderBytes-100)/len(line))
	for range 600 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			continue
		}
		conns = append(conns, c)
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write([]byte(block)) // never finished
	}
	time.Sleep(500 * time.Millisecond) // let the node read what it will
	grew := int64(heap()) - int64(before)
	t.Logf("600 unfinished %d KiB header blocks from one address: heap and stacks grew %.2f MB", len(block)>>10, float64(grew)/1e6)
	if grew > 8<<20 {
		t.Fatalf("heap and stacks grew %d bytes, want under 8 MiB", grew)
	}
}
