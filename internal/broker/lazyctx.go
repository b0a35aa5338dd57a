package broker

import (
	"context"
	"sync"
	"time"
)

// lazyTimeout is a context with a deadline whose timer is only started
// when something waits on it (Done). A connect answered from the caches
// (identity, policies) never calls Done, so it costs no timer; one that
// reads the store gets an ordinary context.WithDeadline, created on the
// first Done and released by cancel.
type lazyTimeout struct {
	deadline time.Time

	mu    sync.Mutex
	inner context.Context // nil until Done
	stop  context.CancelFunc
	err   error // set by cancel while inner is nil
}

var _ context.Context = (*lazyTimeout)(nil)

// closedDone is the Done channel of a lazyTimeout cancelled before anyone
// waited on it.
var closedDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// newLazyTimeout returns a context that is done d from now, and the
// function that releases it (call it as with context.WithTimeout).
func newLazyTimeout(d time.Duration) (*lazyTimeout, context.CancelFunc) {
	c := &lazyTimeout{deadline: time.Now().Add(d)}
	return c, c.cancel
}

func (c *lazyTimeout) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *lazyTimeout) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return closedDone
	}
	if c.inner == nil {
		c.inner, c.stop = context.WithDeadline(context.Background(), c.deadline)
	}
	return c.inner.Done()
}

func (c *lazyTimeout) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
		return c.err
	case c.inner != nil:
		return c.inner.Err()
	case !time.Now().Before(c.deadline):
		return context.DeadlineExceeded
	}
	return nil
}

func (c *lazyTimeout) Value(any) any { return nil }

func (c *lazyTimeout) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.inner != nil:
		c.stop()
	case c.err == nil && !time.Now().Before(c.deadline):
		c.err = context.DeadlineExceeded
	case c.err == nil:
		c.err = context.Canceled
	}
}
