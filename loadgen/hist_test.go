package loadgen

import (
	"testing"
	"time"
)

func TestHistBucketsCoverEveryValue(t *testing.T) {
	for _, us := range []uint64{0, 1, 15, 16, 17, 31, 32, 33, 1000, 12345, 1 << 40} {
		i := histIndex(us)
		if lo, hi := histLower(i), histLower(i+1); us < lo || us >= hi {
			t.Fatalf("%d µs in bucket %d = [%d,%d)", us, i, lo, hi)
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	var h, other Hist
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	other.Record(time.Hour)
	h.Add(&other)
	if h.N() != 1001 {
		t.Fatalf("N = %d", h.N())
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 500}, {0.99, 990}} {
		got := h.QuantileMs(c.q)
		if got < c.want || got > c.want*1.07 {
			t.Errorf("q%.2f = %.1f ms, want %.0f..+7%%", c.q, got, c.want)
		}
	}
	if got := h.QuantileMs(1); got < 3600e3 {
		t.Errorf("max = %.0f ms, want the hour", got)
	}
}
