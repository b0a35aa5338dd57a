package telemetry

import (
	"context"
	"fmt"
)

// Span marks the points of one message in a batch: points[prev.End:End]
// come from the journal message Seq (0: not from a journal, always
// stored), where prev is the span before it (End 0 for the first).
type Span struct {
	End int
	Seq uint64
}

// SpanAppender is a Store that skips what is already stored message by
// message, inside the transaction that stores the rest: AppendSpans locks
// the journal's replay point, stores only the points of spans whose Seq is
// 0 or above it, and moves the point to the largest Seq of spans (never
// back). Two writers of the same journal (a cluster node and the survivor
// adopting its backlog, docs/cluster.md) each reading the journal in
// order thus store every message exactly once between them, however their
// batches overlap. Both backends implement it; the Writer uses it.
type SpanAppender interface {
	AppendSpans(ctx context.Context, points []Point, spans []Span) error
}

// Unstored returns the points of spans that are not stored when the
// journal's replay point is last (Seq 0, or above last), and the largest
// Seq of spans. Malformed spans (an End that goes back or past the points,
// or that leave points uncovered) are an error.
func Unstored(points []Point, spans []Span, last uint64) (kept []Point, maxSeq uint64, err error) {
	start, all := 0, true
	for _, sp := range spans {
		if sp.End < start || sp.End > len(points) {
			return nil, 0, fmt.Errorf("telemetry: span end %d outside [%d, %d]", sp.End, start, len(points))
		}
		if sp.Seq != 0 && sp.Seq <= last {
			all = false
		}
		maxSeq = max(maxSeq, sp.Seq)
		start = sp.End
	}
	if start != len(points) {
		return nil, 0, fmt.Errorf("telemetry: spans cover %d of %d points", start, len(points))
	}
	if all {
		return points, maxSeq, nil
	}
	start = 0
	for _, sp := range spans {
		if sp.Seq == 0 || sp.Seq > last {
			kept = append(kept, points[start:sp.End]...)
		}
		start = sp.End
	}
	return kept, maxSeq, nil
}
