package loadgen

import (
	"math"
	"math/bits"
)

// histogram counts durations in nanoseconds in log-linear buckets: values
// below 2^histSubBits exactly, larger ones with a relative error below
// 2^-histSubBits (0.8%). It takes a fixed 31 KiB whatever the number of
// samples, so every worker keeps its own and they merge at the end.
type histogram struct {
	counts []uint64
	n      uint64
	sum    int64
	max    int64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histMaxBits = 37 // values up to 2^37 ns (137 s); larger ones count as the largest
	// histBuckets is bucketOf(1<<histMaxBits-1) + 1.
	histBuckets = (histMaxBits - histSubBits + 1) * histSub
)

func newHistogram() *histogram { return &histogram{counts: make([]uint64, histBuckets)} }

// bucketOf maps v to its bucket: below 2*histSub the bucket is v itself;
// above, each power of two is split into histSub equal buckets.
func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	if v >= 1<<histMaxBits {
		v = 1<<histMaxBits - 1
	}
	shift := max(0, bits.Len64(uint64(v))-histSubBits-1)
	return shift*histSub + int(v>>shift)
}

// bucketHigh is the largest value that falls into bucket i.
func bucketHigh(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	shift := i/histSub - 1
	m := int64(i - shift*histSub)
	return (m+1)<<shift - 1
}

func (h *histogram) record(v int64) {
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += v
	h.max = max(h.max, v)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

func (h *histogram) mean() int64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / int64(h.n)
}

// quantile returns the smallest recorded value (to the bucket's precision,
// rounded up, at most the maximum) with at least q of the samples at or
// below it; 0 when empty.
func (h *histogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(1, min(rank, h.n))
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return min(bucketHigh(i), h.max)
		}
	}
	return h.max
}
