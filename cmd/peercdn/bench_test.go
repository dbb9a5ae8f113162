package main

import (
	"encoding/json"
	"os/exec"
	"strconv"
	"testing"

	"github.com/peercdn/peercdn/loadgen"
)

// `peercdn bench tracker` splits its connections over --procs generator
// processes and adds up their results, with the server's RSS and CPU.
func TestBenchTrackerProcesses(t *testing.T) {
	n := startServe(t)
	out, err := exec.Command(binary(t), "bench", "tracker", "--url", "ws://"+n.addr+"/announce",
		"--mode", "realistic", "--conns", "60", "--procs", "2", "--storm", "500ms", "--seconds", "1",
		"--hashes", "4", "--json", "--server-pid", strconv.Itoa(n.cmd.Process.Pid)).Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var r loadgen.Result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if r.Conns != 60 || r.Opened != 60 || r.Dropped != 0 || r.AnswersReceived == 0 {
		t.Fatalf("conns %d opened %d dropped %d answers %d", r.Conns, r.Opened, r.Dropped, r.AnswersReceived)
	}
	if r.P99Ms <= 0 || r.Server == nil || r.Server.RSSKB <= 0 || r.Server.RunCPUSeconds <= 0 {
		t.Fatalf("p99 %v, server %+v", r.P99Ms, r.Server)
	}
}
