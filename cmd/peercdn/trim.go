package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// trimMemory collects garbage and returns free memory to the OS once the
// process has gone a whole period without a GC after allocating at least
// trimAfterBytes: a join storm leaves garbage, grown goroutine stacks and
// pooled buffers behind, and without allocation nothing collects them
// until the runtime's forced GC two minutes later. RSS is what operators
// size a node by (docs/benchmarks.md has the figures). Under load GC runs
// by itself and this does nothing; idle, it runs once.
func trimMemory(ctx context.Context, every time.Duration) {
	samples := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/heap/allocs:bytes"}}
	read := func() (cycles, allocs uint64) {
		metrics.Read(samples)
		return samples[0].Value.Uint64(), samples[1].Value.Uint64()
	}
	lastCycles, trimmedAt := read()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cycles, allocs := read()
		if cycles == lastCycles && allocs-trimmedAt >= trimAfterBytes {
			debug.FreeOSMemory()
			cycles, allocs = read()
			trimmedAt = allocs
		}
		lastCycles = cycles
	}
}

// trimAfterBytes is how much must have been allocated since the last trim.
const trimAfterBytes = 16 << 20
