package loadgen

import (
	"bufio"
	"bytes"
	"os"
	"runtime/debug"
	"strconv"
)

// QuietGC keeps the generator's garbage collector out of the measurement.
// The generator shares the cores with the server it measures, and a
// collection of its heap (tens of thousands of client sockets, their
// buffers and goroutines) stalls every reader at once: in a 10k-connection
// join storm it was most of the offer->answer p99 (docs/benchmarks.md). So
// the heap grows instead, up to a limit of a quarter of the memory
// available split over procs processes (at least 512 MiB, at most 8 GiB),
// and only then is collected. A GOGC or GOMEMLIMIT in the environment
// wins. It returns the limit set, 0 if none.
func QuietGC(procs int) int64 {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := memAvailable() / 4 / int64(max(procs, 1))
	limit = min(max(limit, 512<<20), 8<<30)
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(limit)
	return limit
}

// memAvailable reads MemAvailable from /proc/meminfo (Linux); 0 elsewhere.
func memAvailable() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := bytes.CutPrefix(s.Bytes(), []byte("MemAvailable:")); ok {
			kb, _ := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(v, []byte("kB")))), 10, 64)
			return kb << 10
		}
	}
	return 0
}
