package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Usage is what the server process used, read from /proc (Linux).
type Usage struct {
	PID int `json:"pid"`
	// RSS before any connection, at the end of the window, and per
	// connection open then.
	RSSBaseKB    int64   `json:"rssBaseKB"`
	RSSKB        int64   `json:"rssKB"`
	RSSPerConnKB float64 `json:"rssPerConnKB"`
	// CPUSeconds is user+system time in the window.
	CPUSeconds float64 `json:"cpuSeconds"`
	// ResponsesPerCPUSec is responses read in the window per CPU-second the
	// server spent: the rate that does not depend on who else shares the
	// cores.
	ResponsesPerCPUSec float64 `json:"responsesPerCpuSec"`
	// CPUShare is the server's CPU time over wall time in the window (1 = a
	// whole core).
	CPUShare float64 `json:"cpuShare"`
	// RunCPUSeconds is the server's CPU time from before the first
	// connection to the end of the window (the join storm included), and
	// RunCPUPerConnMs the same per connection opened.
	RunCPUSeconds   float64 `json:"runCpuSeconds"`
	RunCPUPerConnMs float64 `json:"runCpuPerConnMs"`
}

// Sample is one reading of a process's RSS and CPU time.
type Sample struct {
	At     time.Time
	RSSKB  int64
	CPUSec float64
}

// ReadSample reads pid's RSS and CPU time from /proc.
func ReadSample(pid int) (Sample, error) {
	s := Sample{At: time.Now()}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the parenthesized command name; utime and stime are the
	// 14th and 15th fields overall, in clock ticks (100 per second on Linux).
	i := bytes.LastIndexByte(st, ')')
	f := strings.Fields(string(st[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	stt, _ := strconv.ParseFloat(f[12], 64)
	s.CPUSec = (ut + stt) / 100
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.RSSKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return s, nil
}

// Fill derives the usage over a window from readings before any
// connection (base), at its start and at its end.
func (u *Usage) Fill(base, start, end Sample, r *Result) {
	u.RSSBaseKB, u.RSSKB = base.RSSKB, end.RSSKB
	if r.Opened > 0 {
		u.RSSPerConnKB = float64(end.RSSKB-base.RSSKB) / float64(r.Opened-r.Lost)
	}
	u.CPUSeconds = end.CPUSec - start.CPUSec
	u.RunCPUSeconds = end.CPUSec - base.CPUSec
	if r.Opened > 0 {
		u.RunCPUPerConnMs = u.RunCPUSeconds * 1000 / float64(r.Opened)
	}
	if wall := end.At.Sub(start.At).Seconds(); wall > 0 {
		u.CPUShare = u.CPUSeconds / wall
	}
	if u.CPUSeconds > 0 {
		u.ResponsesPerCPUSec = r.ResponsesPerSec * r.Seconds / u.CPUSeconds
	}
}
