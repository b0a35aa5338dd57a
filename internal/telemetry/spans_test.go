package telemetry

import (
	"testing"
)

// FuzzUnstored: for any spans (pairs of end and sequence bytes) and replay
// point, Unstored never panics, keeps the points of the spans above the
// point or without a sequence in their order, and refuses spans that do
// not cover the points exactly.
func FuzzUnstored(f *testing.F) {
	f.Add(uint8(4), []byte{1, 1, 3, 2, 4, 3}, uint8(2))
	f.Add(uint8(3), []byte{3, 0}, uint8(0))
	f.Add(uint8(2), []byte{2, 9, 1, 1}, uint8(5)) // an end that goes back
	f.Fuzz(func(t *testing.T, n uint8, raw []byte, last uint8) {
		points := make([]Point, n)
		for i := range points {
			points[i] = Point{Thing: "d", Key: "k", TS: int64(i), Value: Number(float64(i))}
		}
		var spans []Span
		for i := 0; i+1 < len(raw); i += 2 {
			spans = append(spans, Span{End: int(raw[i]), Seq: uint64(raw[i+1])})
		}
		kept, maxSeq, err := Unstored(points, spans, uint64(last))
		start, valid := 0, true
		var want []int64
		var wantMax uint64
		for _, sp := range spans {
			if sp.End < start || sp.End > len(points) {
				valid = false
				break
			}
			if sp.Seq == 0 || sp.Seq > uint64(last) {
				for i := start; i < sp.End; i++ {
					want = append(want, int64(i))
				}
			}
			wantMax = max(wantMax, sp.Seq)
			start = sp.End
		}
		valid = valid && start == len(points)
		if !valid {
			if err == nil {
				t.Fatalf("Unstored(%d points, %v) = nil error; want one", n, spans)
			}
			return
		}
		if err != nil {
			t.Fatalf("Unstored(%d points, %v) = %v", n, spans, err)
		}
		if maxSeq != wantMax || len(kept) != len(want) {
			t.Fatalf("Unstored(%d points, %v, %d) = %d points, max %d; want %d, %d", n, spans, last, len(kept), maxSeq, len(want), wantMax)
		}
		for i, p := range kept {
			if p.TS != want[i] {
				t.Fatalf("kept[%d].TS = %d; want %d", i, p.TS, want[i])
			}
		}
	})
}
