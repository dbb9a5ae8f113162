//go:build !js

package agent

import (
	"bytes"
	"runtime/pprof"
	"testing"
)

// A native peer connection carries data channels only, so nothing of pion's
// RTP machinery (interceptor goroutines with their tickers) may run for it.
func TestPeerConnectionRunsNoMediaInterceptors(t *testing.T) {
	api := newAPI(&Config{LoopbackOnly: true})
	pc, err := api.NewPeerConnection(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.CreateDataChannel("peercdn"); err != nil {
		t.Fatal(err)
	}
	var stacks bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&stacks, 2); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stacks.Bytes(), []byte("pion/interceptor")) {
		t.Fatalf("an interceptor goroutine runs for a data-only peer connection:\n%s", stacks.String())
	}
}
