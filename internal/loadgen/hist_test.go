package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBucketsAreContiguous(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 257, 511, 512, 1 << 20, 1<<40 + 3, math.MaxUint64} {
		b := bucketOf(v)
		if b < prev {
			t.Errorf("bucketOf(%d) = %d; want >= %d", v, b, prev)
		}
		if b >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d; want < %d", v, b, histBuckets)
		}
		prev = b
	}
	for v := uint64(0); v < 1<<14; v++ {
		if got := bucketOf(bucketValue(bucketOf(v))); got != bucketOf(v) {
			t.Fatalf("bucketOf(bucketValue(bucketOf(%d))) = %d; want %d", v, got, bucketOf(v))
		}
	}
}

func TestQuantileError(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h, a, b Hist
	vals := make([]uint64, 100_000)
	for i := range vals {
		v := uint64(r.ExpFloat64() * 1e6)
		vals[i] = v
		h.Record(v)
		if i%2 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	a.Merge(&b)
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := float64(vals[int(q*float64(len(vals)))-1])
		for name, hh := range map[string]*Hist{"single": &h, "merged": &a} {
			got := float64(hh.Quantile(q))
			if math.Abs(got-want)/want > 0.01 {
				t.Errorf("%s Quantile(%g) = %g; want %g within 1%%", name, q, got, want)
			}
		}
	}
	if h.Max() != vals[len(vals)-1] || a.Max() != h.Max() {
		t.Errorf("Max() = %d, merged %d; want %d", h.Max(), a.Max(), vals[len(vals)-1])
	}
	if a.Count() != h.Count() {
		t.Errorf("merged Count() = %d; want %d", a.Count(), h.Count())
	}
	var empty Hist
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 {
		t.Error("empty histogram: want zero quantile and mean")
	}
}
