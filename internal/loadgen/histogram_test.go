package loadgen

import (
	"math"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	if got := bucketOf(1<<histMaxBits - 1); got != histBuckets-1 {
		t.Fatalf("bucketOf(max) = %d, want %d", got, histBuckets-1)
	}
	if got := bucketOf(math.MaxInt64); got != histBuckets-1 {
		t.Errorf("bucketOf(MaxInt64) = %d, want the last bucket %d", got, histBuckets-1)
	}
	if got := bucketOf(-5); got != 0 {
		t.Errorf("bucketOf(-5) = %d, want 0", got)
	}
	// Every bucket holds the values from just above the previous bucket's
	// high to its own high, and is narrower than 1/histSub of its values.
	low := int64(0)
	for i := range histBuckets {
		high := bucketHigh(i)
		if high < low {
			t.Fatalf("bucket %d: high %d below low %d", i, high, low)
		}
		for _, v := range []int64{low, (low + high) / 2, high} {
			if got := bucketOf(v); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, got, i)
			}
		}
		if width := high - low + 1; low >= histSub && float64(width) > float64(low)/histSub {
			t.Fatalf("bucket %d [%d, %d] is wider than 1/%d of its values", i, low, high, histSub)
		}
		low = high + 1
	}
}

func TestHistogramQuantiles(t *testing.T) {
	seq := func(n, step int64) []int64 {
		var vs []int64
		for i := int64(1); i <= n; i++ {
			vs = append(vs, i*step)
		}
		return vs
	}
	ms := int64(time.Millisecond)
	outlier := make([]int64, 100) // 99 samples of 1ms and one of 1s
	for i := range outlier {
		outlier[i] = ms
	}
	outlier[99] = 1000 * ms
	tests := []struct {
		name   string
		values []int64
		q      float64
		want   int64
	}{
		{"empty", nil, 0.5, 0},
		{"one", []int64{42}, 0.5, 42},
		{"one p99", []int64{42}, 0.99, 42},
		{"exact p50", seq(100, 1), 0.50, 50},
		{"exact p90", seq(100, 1), 0.90, 90},
		{"exact p99", seq(100, 1), 0.99, 99},
		{"exact p100", seq(100, 1), 1, 100},
		{"exact p0 is the minimum", seq(100, 1), 0, 1},
		{"us p50", seq(1000, 1000), 0.50, 500_000},
		{"us p99", seq(1000, 1000), 0.99, 990_000},
		{"us max", seq(1000, 1000), 1, 1_000_000},
		{"outlier p50", outlier, 0.50, ms},
		{"outlier p99", outlier, 0.99, ms},
		{"outlier p999", outlier, 0.999, 1000 * ms},
	}
	for _, tc := range tests {
		h := newHistogram()
		for _, v := range tc.values {
			h.record(v)
		}
		got := h.quantile(tc.q)
		// Within the bucket's precision, never below the true value.
		if got < tc.want || float64(got-tc.want) > float64(tc.want)/histSub {
			t.Errorf("%s: quantile(%v) = %d, want %d (+%.1f%%)", tc.name, tc.q, got, tc.want, 100.0/histSub)
		}
	}
}

func TestHistogramMergeAndMean(t *testing.T) {
	all, a, b := newHistogram(), newHistogram(), newHistogram()
	for i := int64(1); i <= 10000; i++ {
		v := i * i // spread over many octaves
		all.record(v)
		if i%3 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
	}
	a.merge(b)
	for _, q := range []float64{0, 0.1, 0.5, 0.9, 0.99, 0.999, 1} {
		if got, want := a.quantile(q), all.quantile(q); got != want {
			t.Errorf("merged quantile(%v) = %d, want %d", q, got, want)
		}
	}
	if a.n != all.n || a.max != all.max || a.mean() != all.mean() {
		t.Errorf("merged n, max, mean = %d, %d, %d; want %d, %d, %d", a.n, a.max, a.mean(), all.n, all.max, all.mean())
	}
	if got, want := all.max, int64(10000*10000); got != want {
		t.Errorf("max = %d, want %d", got, want)
	}
	if got := newHistogram().mean(); got != 0 {
		t.Errorf("mean of nothing = %d, want 0", got)
	}
}
