//go:build !js

package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBrowserBuildDeps: the browser build stays small and uses the
// browser's own stacks: no net/http (fetch and WebSocket instead), no pion
// WebRTC (RTCPeerConnection instead), nothing of the tracker's.
func TestBrowserBuildDeps(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", ".")
	cmd.Env = append(cmd.Environ(), "GOOS=js", "GOARCH=wasm")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 {
		t.Fatalf("go list -deps gave %d packages", len(deps))
	}
	for _, d := range deps {
		for _, bad := range []string{"net/http", "github.com/pion/webrtc", "github.com/pion/ice", "github.com/redis/", "github.com/prometheus/", "github.com/peercdn/peercdn/tracker"} {
			if strings.HasPrefix(d, bad) {
				t.Errorf("the browser build imports %s", d)
			}
		}
	}
}
