package loadgen

import "math/bits"

// subBits sets the resolution of Hist: 2^subBits linear sub-buckets per
// power of two, so a recorded value is known within 1/128 (< 0.8 %).
const subBits = 7

// histBuckets covers every uint64: values below 2^subBits are exact, and
// each power of two above has 2^subBits buckets.
const histBuckets = (64 - subBits + 1) << subBits

// Hist is a log-linear histogram of non-negative values (nanoseconds here)
// in the manner of HdrHistogram: fixed memory, constant-time Record, and
// quantiles within 0.8 % of the true value. The zero value is empty and
// ready to use; it is not safe for concurrent use (keep one per goroutine
// and Merge them).
type Hist struct {
	counts []uint64
	n      uint64
	max    uint64
	sum    float64
}

func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - subBits
	return shift<<subBits + int(v>>shift)
}

// bucketValue is the middle of bucket i's range.
func bucketValue(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	shift := i>>subBits - 1
	m := uint64(i - shift<<subBits)
	return m<<shift + (uint64(1)<<shift)/2
}

// Record adds one value.
func (h *Hist) Record(v uint64) {
	if h.counts == nil {
		h.counts = make([]uint64, histBuckets)
	}
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
	if v > h.max {
		h.max = v
	}
}

// Merge adds every value recorded in o.
func (h *Hist) Merge(o *Hist) {
	if o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, histBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if o.max > h.max {
		h.max = o.max
	}
}

// Count is the number of recorded values.
func (h *Hist) Count() uint64 { return h.n }

// Max is the largest recorded value, exactly.
func (h *Hist) Max() uint64 { return h.max }

// Mean is the average of the recorded values (0 when empty).
func (h *Hist) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Quantile returns the value below which a fraction q (0..1) of the
// recorded values lie, within the histogram's resolution; 0 when empty.
func (h *Hist) Quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank > h.n {
		rank = h.n
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(bucketValue(i), h.max)
		}
	}
	return h.max
}
