// Package jsasync publishes to JetStream without waiting on the caller's
// goroutine: each publish returns at once a channel that receives nil
// once JetStream stored the message, or an error after a deadline at the
// latest. At most MaxPending publishes are outstanding; beyond it a
// publish waits (AckTimeout at most) and is then refused.
//
//	Publish: PublishMsgAsync ─▶ waits (bounded, FIFO) ─▶ ack loop ─▶ done
//
// The ack loop resolves publishes in order: JetStream answers the
// publishes of one connection to one stream in order, so waiting on the
// oldest first costs nothing. A publish may also wait for another
// channel (Also): its done then says both succeeded. Both were started
// before either is waited for, so the two waits overlap.
//
// Used by the ingest journal (internal/ingest/jsjournal) and the cluster's
// QoS 1 relay (internal/cluster/jsrelay.go).
package jsasync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options configure a Publisher.
type Options struct {
	// AckTimeout bounds the wait for one acknowledgement (required).
	AckTimeout time.Duration
	// MaxPending bounds the publishes waiting for their acknowledgement
	// (required).
	MaxPending int
	// Refuse turns a refusal into the error the caller receives (and
	// counts it); reason is one of timeout, full, error, closed.
	Refuse func(reason string, err error) error
	// Acked, if set, hears every stored publish (on the ack loop).
	Acked func()
}

type wait struct {
	fut      jetstream.PubAckFuture
	also     <-chan error
	done     chan error
	deadline time.Time
}

// Publisher is an asynchronous JetStream publisher with bounded pending
// publishes and a deadline for each.
type Publisher struct {
	js     jetstream.JetStream
	opts   Options
	mu     sync.RWMutex // held to read while sending to waits; to write to close it
	closed bool
	waits  chan wait
	end    chan struct{}
	once   sync.Once
}

// New starts a Publisher on js (made with
// jetstream.WithPublishAsyncMaxPending(MaxPending)).
func New(js jetstream.JetStream, o Options) *Publisher {
	p := &Publisher{js: js, opts: o, waits: make(chan wait, o.MaxPending), end: make(chan struct{})}
	go p.ackLoop()
	return p
}

// Publish publishes msg and returns at once a channel that receives nil
// when JetStream stored it and also (if not nil) delivered nil, or the
// first error (after AckTimeout at the latest).
func (p *Publisher) Publish(msg *nats.Msg, also <-chan error, opts ...jetstream.PublishOpt) (<-chan error, error) {
	deadline := time.Now().Add(p.opts.AckTimeout)
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return nil, p.opts.Refuse("closed", errors.New("closed"))
	}
	opts = append(opts, jetstream.WithStallWait(p.opts.AckTimeout))
	fut, err := p.js.PublishMsgAsync(msg, opts...)
	if err != nil {
		return nil, p.opts.Refuse(ReasonOf(err), err)
	}
	w := wait{fut: fut, also: also, done: make(chan error, 1), deadline: deadline}
	select {
	case p.waits <- w: // room: no timer on the common path
		return w.done, nil
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case p.waits <- w:
	case <-t.C:
		return nil, p.opts.Refuse("timeout", errors.New("too many publishes waiting for JetStream"))
	}
	return w.done, nil
}

// Pending returns how many publishes wait for their acknowledgement.
func (p *Publisher) Pending() int { return len(p.waits) }

// Close refuses publishes from now on and waits for the answers to the
// outstanding ones (AckTimeout at most).
func (p *Publisher) Close() {
	p.once.Do(func() {
		p.mu.Lock()
		p.closed = true
		close(p.waits)
		p.mu.Unlock()
		<-p.end
	})
}

func (p *Publisher) ackLoop() {
	defer close(p.end)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for w := range p.waits {
		t.Reset(time.Until(w.deadline))
		var err error
		select {
		case <-w.fut.Ok():
			if p.opts.Acked != nil {
				p.opts.Acked()
			}
			if w.also != nil {
				select {
				case err = <-w.also:
				case <-t.C:
					err = p.opts.Refuse("timeout", fmt.Errorf("not stored within %s", p.opts.AckTimeout))
				}
			}
		case e := <-w.fut.Err():
			err = p.opts.Refuse(ReasonOf(e), e)
		case <-t.C:
			err = p.opts.Refuse("timeout", fmt.Errorf("JetStream did not acknowledge within %s", p.opts.AckTimeout))
		}
		w.done <- err
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
	}
}

// ReasonOf classifies a publish error: timeout, full (the stream's size
// limit with discard new) or error.
func ReasonOf(err error) string {
	switch {
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, jetstream.ErrTooManyStalledMsgs), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, jetstream.ErrNoStreamResponse):
		return "timeout"
	case strings.Contains(strings.ToLower(err.Error()), "maximum bytes"):
		// nats-server's "maximum bytes exceeded"; it has no error code
		// of its own.
		return "full"
	}
	return "error"
}

// CreateStream creates or updates a stream, trying again while the
// JetStream cluster is not ready (a meta leader not elected yet, a peer
// not up): 30 s at most, or ctx's deadline; each attempt waits 5 s at
// most. The first failure is logged.
func CreateStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, log interface{ Info(string, ...any) }) (jetstream.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for try := 0; ; try++ {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := js.CreateOrUpdateStream(actx, cfg)
		acancel()
		if err == nil {
			return st, nil
		}
		if try == 0 {
			log.Info("waiting for JetStream to take the stream", "stream", cfg.Name, "error", err)
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}
