package broker

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// throttledHandler passes at most n records per interval to the next
// handler and reports how many it suppressed, so that a reconnect storm or
// a flood of bad packets cannot flood the log.
type throttledHandler struct {
	next     slog.Handler
	st       *throttleState
	n        int
	interval time.Duration
}

type throttleState struct {
	mu         sync.Mutex
	start      time.Time
	count      int
	suppressed int
}

// Throttled returns l passing at most n records per interval (and then
// how many it suppressed): for refusal logs of other components that one
// noisy client must not flood, such as the IP filter's.
func Throttled(l *slog.Logger, n int, interval time.Duration) *slog.Logger {
	return slog.New(newThrottledHandler(l.Handler(), n, interval))
}

func newThrottledHandler(next slog.Handler, n int, interval time.Duration) *throttledHandler {
	return &throttledHandler{next: next, st: &throttleState{}, n: n, interval: interval}
}

func (h *throttledHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *throttledHandler) Handle(ctx context.Context, r slog.Record) error {
	h.st.mu.Lock()
	now := time.Now()
	suppressed := 0
	if now.Sub(h.st.start) >= h.interval {
		suppressed = h.st.suppressed
		h.st.start, h.st.count, h.st.suppressed = now, 0, 0
	}
	if h.st.count >= h.n {
		h.st.suppressed++
		h.st.mu.Unlock()
		return nil
	}
	h.st.count++
	h.st.mu.Unlock()
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed_before", suppressed))
	}
	return h.next.Handle(ctx, r)
}

func (h *throttledHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &throttledHandler{next: h.next.WithAttrs(as), st: h.st, n: h.n, interval: h.interval}
}

func (h *throttledHandler) WithGroup(name string) slog.Handler {
	return &throttledHandler{next: h.next.WithGroup(name), st: h.st, n: h.n, interval: h.interval}
}
