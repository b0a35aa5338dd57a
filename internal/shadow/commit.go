package shadow

import (
	"context"
	"sync"
	"time"

	"github.com/moteiot/mote/internal/store"
)

// committer is the single goroutine that writes shadow changes: whatever
// is pending when it is free goes into one transaction (group commit), so
// one fsync serves many updates. Only after the commit are the ops handed
// back to their workers, which then answer: an accepted response means
// the change is durable.
type committer struct {
	s     *Service
	mu    sync.Mutex
	queue []*pendingOp
	spare []*pendingOp
	wake  chan struct{}
	quit  chan struct{}
	done  chan struct{}
}

func (c *committer) add(p *pendingOp) {
	c.mu.Lock()
	c.queue = append(c.queue, p)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *committer) run() {
	defer close(c.done)
	for {
		select {
		case <-c.wake:
			c.flush()
		case <-c.quit:
			c.flush()
			return
		}
	}
}

// flush commits everything queued, in batches of at most MaxBatch.
func (c *committer) flush() {
	for {
		c.mu.Lock()
		q := c.queue
		c.queue = c.spare[:0]
		c.mu.Unlock()
		if len(q) == 0 {
			c.spare = q
			return
		}
		for rest := q; len(rest) > 0; {
			n := min(len(rest), c.s.opts.MaxBatch)
			c.commitBatch(rest[:n])
			rest = rest[n:]
		}
		clear(q)
		c.spare = q[:0]
	}
}

func (c *committer) commitBatch(batch []*pendingOp) {
	writes := make([]store.ShadowWrite, 0, len(batch))
	idx := make([]int, 0, len(batch))
	for i, p := range batch {
		if p.e.broken.Load() {
			continue
		}
		if p.write != nil {
			writes = append(writes, *p.write)
			idx = append(idx, i)
		}
	}
	if len(writes) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		skipped, conflicts, err := c.s.opts.Store.WriteChecked(ctx, writes)
		cancel()
		if err != nil {
			c.s.log.Error("shadow: commit failed; the requests are answered 500", "writes", len(writes), "error", err)
			for _, i := range idx {
				batch[i].e.broken.Store(true)
			}
		}
		for _, k := range skipped {
			p := batch[idx[k]]
			p.e.broken.Store(true)
			p.failed = ErrThingNotFound // deleted while the update was on its way
		}
		for _, k := range conflicts {
			// Another node changed the shadow since it was read here.
			p := batch[idx[k]]
			p.e.conflict.Store(true)
			p.e.broken.Store(true)
		}
	}
	// Anything of a shadow whose state could not be stored fails: it was
	// computed from that state.
	for _, p := range batch {
		if p.failed == nil && p.e.broken.Load() {
			p.failed = ErrInternal
			if p.e.conflict.Load() {
				p.failed = errConflict // run again on a fresh read
			}
		}
	}
	// Hand back, grouped by worker, in order.
	var cur *worker
	start := 0
	for i, p := range batch {
		if p.w != cur {
			if cur != nil {
				cur.deliver(batch[start:i])
			}
			cur, start = p.w, i
		}
	}
	if cur != nil {
		cur.deliver(batch[start:])
	}
}
