package main

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/peercdn/peercdn/signaling"
)

// TestSIGTERMDrains runs the real binary: on SIGTERM a connected agent gets
// goaway, readiness turns off, and the process exits 0 within the drain
// deadline.
func TestSIGTERMDrains(t *testing.T) {
	bin := binary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve", "--listen", addr, "--drain-timeout", "2s")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var c *signaling.Client
	for {
		if c, err = signaling.Dial(ctx, "ws://"+addr+"/ws", nil); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("tracker did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer c.CloseNow()
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	m, err := c.Recv(ctx)
	if err != nil || m.Type != signaling.TypeGoAway {
		t.Fatalf("after SIGTERM: %+v, %v; want goaway", m, err)
	}
	if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("readyz while draining: %d", resp.StatusCode)
		}
		resp.Body.Close()
	}
	// The agent ignores the goaway: the node closes it at the deadline and exits 0.
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("exited after %v; drain deadline 2s", took)
	}
}
