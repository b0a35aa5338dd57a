package telemetry

import (
	"context"
	"io"
	"log/slog"
	"time"
)

// RunRetention deletes the points older than keep from s, at once and then
// every `every` (an hour if every <= 0), until ctx ends. keep <= 0 keeps
// everything: RunRetention returns at once. It logs what it deleted (at
// Info, only when it deleted something) and failures (at Warn; the next
// round tries again) to log, which may be nil.
func RunRetention(ctx context.Context, s Store, keep, every time.Duration, log *slog.Logger) {
	if keep <= 0 {
		return
	}
	if every <= 0 {
		every = time.Hour
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		start := time.Now()
		cutoff := start.Add(-keep)
		n, err := s.DeleteBefore(ctx, cutoff.UnixMilli())
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("telemetry retention failed", "keep", keep, "error", err)
		case n > 0:
			log.Info("telemetry retention", "deleted_points", n, "before", cutoff.UTC().Format(time.RFC3339), "took", time.Since(start).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
