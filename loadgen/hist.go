package loadgen

import (
	"math/bits"
	"sync"
	"time"
)

// Hist is a log-linear latency histogram in microseconds: 16 buckets per
// power of two, so any percentile is within 1/16 (6%) of the truth. Child
// processes send theirs to the parent as JSON, which adds them up.
type Hist struct {
	mu     sync.Mutex
	Counts []int64 `json:"counts"` // by bucket index; trailing zeros trimmed
}

const histSub = 16

func histIndex(us uint64) int {
	if us < histSub {
		return int(us)
	}
	shift := bits.Len64(us) - 5 // us>>shift is in [16,32)
	return (shift+1)*histSub + int((us>>shift)&(histSub-1))
}

// histLower is the smallest value of bucket i, in microseconds.
func histLower(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	shift := i/histSub - 1
	return uint64(histSub+i%histSub) << shift
}

// Record adds one observation.
func (h *Hist) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := histIndex(uint64(d / time.Microsecond))
	h.mu.Lock()
	if i >= len(h.Counts) {
		h.Counts = append(h.Counts, make([]int64, i+1-len(h.Counts))...)
	}
	h.Counts[i]++
	h.mu.Unlock()
}

// Add merges o into h.
func (h *Hist) Add(o *Hist) {
	o.mu.Lock()
	c := append([]int64(nil), o.Counts...)
	o.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(c) > len(h.Counts) {
		h.Counts = append(h.Counts, make([]int64, len(c)-len(h.Counts))...)
	}
	for i, n := range c {
		h.Counts[i] += n
	}
}

// N is the number of observations.
func (h *Hist) N() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var n int64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// QuantileMs returns the q-quantile (0..1) in milliseconds: the upper edge
// of the bucket it falls in, so it never understates. 0 when empty.
func (h *Hist) QuantileMs(q float64) float64 {
	total := h.N()
	if total == 0 {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	rank := int64(q*float64(total) + 0.5)
	rank = max(rank, 1)
	var seen int64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			return float64(histLower(i+1)) / 1000
		}
	}
	return float64(histLower(len(h.Counts))) / 1000
}
