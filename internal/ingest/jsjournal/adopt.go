package jsjournal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/ingest"
)

// Adoption: the backlog of a lost node (docs/cluster.md, "A node that
// never comes back"). A node killed for good leaves, on its subject
// mote.ingest.<node>, messages JetStream acknowledged to their devices and
// that node's telemetry writer had not stored. When the lease finds the
// node lost, every survivor's Adopter tries to claim it (Options.Open: a
// PostgreSQL advisory lock keyed by the node, held for the adoption); the
// one that gets it reads the subject from that node's replay point + 1 and
// hands the messages to a consumer that stores their telemetry under the
// LOST node's replay point, purges what was committed, and stops when the
// subject is drained — or at once when the node is heard again. The
// others retry their claim while the node stays absent, and find nothing
// left once the holder is done.
//
// Exactly once does not rest on the claim nor on timing: the telemetry
// store skips, message by message under the row lock of the node's replay
// point (telemetry.SpanAppender), what any writer of that journal stored
// before — the adopter, a second adopter, or the node itself come back
// or only cut off from NATS.

// ErrClaimed is returned by AdopterOptions.Open when another node holds
// the adoption of that node.
var ErrClaimed = errors.New("jsjournal: another node adopts this node's backlog")

// Target is where one adoption writes: the lost node's journal in the
// telemetry store, claimed by this node until Close.
type Target struct {
	// Consumer takes the adopted messages: the rules' durable pass,
	// whose telemetry goes to a writer on a store opened for the lost
	// node's journal.
	Consumer ingest.Consumer
	// Applied returns that writer's committed point (at first, the lost
	// node's replay point as stored).
	Applied func() uint64
	// Flush waits until what Consumer was handed is stored.
	Flush func(ctx context.Context) error
	// Close flushes, releases the claim and the store.
	Close func() error
}

// AdoptOptions configure one Adopt.
type AdoptOptions struct {
	JS     jetstream.JetStream // required
	Stream string              // default DefaultStream
	Prefix string              // default DefaultPrefix
	Node   string              // the lost node (required)
	Target *Target             // required
	// BatchTimeout bounds each wait for the next message, the flush and
	// each purge; default DefaultAckTimeout.
	BatchTimeout time.Duration
	// Adopted, when set, is called for every message handed over.
	Adopted func()
}

// AdoptResult reports an adoption.
type AdoptResult struct {
	Adopted uint64 // messages handed to the target
	Drained bool   // the subject holds nothing beyond what is stored
	Last    uint64 // the lost node's committed point at the end
}

// Adopt reads o.Node's subject from its replay point + 1, hands the
// messages to o.Target.Consumer (m.Seq = stream sequence), flushes and
// purges the subject up to what was committed. It returns when the
// subject is drained (Drained), when ctx ends (the node was heard again,
// or this node stops: what was handed is still flushed and purged), or on
// an error.
func Adopt(ctx context.Context, o AdoptOptions) (res AdoptResult, err error) {
	if o.JS == nil || o.Node == "" || o.Target == nil {
		return res, errors.New("jsjournal: Adopt needs JS, Node and Target")
	}
	o.Stream = cmpOr(o.Stream, DefaultStream)
	o.Prefix = cmpOr(o.Prefix, DefaultPrefix)
	if o.BatchTimeout <= 0 {
		o.BatchTimeout = DefaultAckTimeout
	}
	t := o.Target
	subject := o.Prefix + "." + o.Node
	bctx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), o.BatchTimeout)
	}
	sctx, cancel := bctx()
	st, err := o.JS.Stream(sctx, o.Stream)
	cancel()
	if err != nil {
		return res, fmt.Errorf("jsjournal: adopt %s: stream: %w", o.Node, err)
	}
	start := t.Applied()
	// purge drops what is committed and finishes: the messages handed
	// are flushed first, whatever the reason to stop.
	defer func() {
		fctx, cancel := bctx()
		defer cancel()
		if ferr := t.Flush(fctx); ferr != nil {
			err = errors.Join(err, fmt.Errorf("jsjournal: adopt %s: flush: %w", o.Node, ferr))
			res.Drained = false
		}
		res.Last = t.Applied()
		if res.Last > start {
			if perr := st.Purge(fctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeSequence(res.Last+1)); perr != nil {
				err = errors.Join(err, fmt.Errorf("jsjournal: adopt %s: purge: %w", o.Node, perr)) // harmless: stored anyway
			}
		}
	}()
	// The subject's last message: nothing beyond the replay point, nothing
	// to adopt.
	lastOf := func() (uint64, error) {
		lctx, cancel := bctx()
		defer cancel()
		m, err := st.GetLastMsgForSubject(lctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		return m.Sequence, nil
	}
	target, err := lastOf()
	if err != nil {
		return res, fmt.Errorf("jsjournal: adopt %s: last message: %w", o.Node, err)
	}
	if target <= start {
		res.Drained = true
		return res, nil
	}
	cctx, cancel := bctx()
	cons, err := o.JS.OrderedConsumer(cctx, o.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    start + 1,
	})
	cancel()
	if err != nil {
		return res, fmt.Errorf("jsjournal: adopt %s: consumer: %w", o.Node, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return res, fmt.Errorf("jsjournal: adopt %s: consume: %w", o.Node, err)
	}
	defer it.Stop()
	last := start
	for {
		if last >= target {
			// Caught up with the last message seen: done unless the
			// subject grew meanwhile (a node cut off from the others but
			// not from JetStream).
			if target, err = lastOf(); err != nil {
				return res, fmt.Errorf("jsjournal: adopt %s: last message: %w", o.Node, err)
			}
			if last >= target {
				res.Drained = true
				return res, nil
			}
		}
		nctx, cancel := context.WithTimeout(ctx, o.BatchTimeout)
		msg, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if ctx.Err() != nil {
			return res, nil // interrupted: the node is back, or this one stops
		}
		if errors.Is(err, context.DeadlineExceeded) {
			// Nothing within the deadline: the messages up to the last one
			// seen may have been purged meanwhile (the node came back and
			// stored them, or another adopter did).
			if target, err = lastOf(); err == nil && last >= target {
				res.Drained = true
				return res, nil
			}
			if err == nil {
				err = context.DeadlineExceeded
			}
		}
		if err != nil {
			return res, fmt.Errorf("jsjournal: adopt %s: next message after %d: %w", o.Node, last, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			continue
		}
		seq := md.Sequence.Stream
		if seq <= last {
			continue
		}
		last = seq
		m, err := ingest.DecodeRecord(msg.Data())
		if err != nil {
			continue // counted by the node's own consumer when it reads it; nothing to store
		}
		m.Seq = seq
		t.Consumer.ApplyDurable(m)
		res.Adopted++
		if o.Adopted != nil {
			o.Adopted()
		}
	}
}

// AdopterOptions configure an Adopter.
type AdopterOptions struct {
	Conn   *nats.Conn // required
	Self   string     // this node's id: never adopted
	Stream string     // default DefaultStream
	Prefix string     // default DefaultPrefix
	// Open claims the adoption of node and prepares its Target; ErrClaimed
	// when another node holds it (tried again every RetryEvery while the
	// node is absent). ctx ends when the Adopter closes: the target's
	// waits (its writer's Add) should end with it; Open bounds its own.
	Open func(ctx context.Context, node string) (*Target, error)
	// Alive reports whether node is heard again (the lease): an adoption
	// stops at once, and none starts. It may instead be given to Start
	// (the lease is made after the Adopter, whose Lost it calls).
	Alive func(node string) bool
	// RetryEvery is how often a claim held elsewhere or a failed adoption
	// is tried again, and how often a running one checks Alive; default 1 s.
	RetryEvery time.Duration
	// BatchTimeout as in AdoptOptions.
	BatchTimeout time.Duration
	// MaxConcurrent bounds the adoptions running at once (one per node at
	// most); default 2.
	MaxConcurrent int
	// SweepAfter, when positive, is how long after Start the Adopter
	// looks once for subjects of nodes that are not heard (nodes that died
	// before this one started, which the lease never heard of) and adopts
	// them as if lost. Give it the lease timeout.
	SweepAfter time.Duration
	Logger     *slog.Logger
	Metrics    prometheus.Registerer // nil: not registered
}

// Adopter adopts the backlogs of lost nodes (Lost, from the lease), one
// adoption at a time per node.
type Adopter struct {
	o       AdopterOptions
	js      jetstream.JetStream
	sem     chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	running map[string]bool
	alive   atomic.Pointer[func(string) bool]

	adopted   prometheus.Counter
	adoptions *prometheus.CounterVec
}

// Adoption results (mote_cluster_ingest_adoptions_total{result}).
const (
	ResultDrained = "drained" // the subject held nothing more; stopped
	ResultBack    = "back"    // the node was heard again; stopped
	ResultFailed  = "failed"  // an error; tried again while the node is absent
	ResultClaimed = "claimed" // another node held the claim (counted once per loss)
)

// NewAdopter makes an Adopter; Close stops it.
func NewAdopter(o AdopterOptions) (*Adopter, error) {
	if o.Conn == nil || o.Open == nil {
		return nil, errors.New("jsjournal: NewAdopter needs Conn and Open")
	}
	o.Stream = cmpOr(o.Stream, DefaultStream)
	o.Prefix = cmpOr(o.Prefix, DefaultPrefix)
	if o.RetryEvery <= 0 {
		o.RetryEvery = time.Second
	}
	if o.BatchTimeout <= 0 {
		o.BatchTimeout = DefaultAckTimeout
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 2
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, fmt.Errorf("jsjournal: adopter: %w", err)
	}
	a := &Adopter{o: o, js: js, sem: make(chan struct{}, o.MaxConcurrent), running: map[string]bool{}}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if o.Alive != nil {
		a.alive.Store(&o.Alive)
	}
	a.adopted = prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_cluster_ingest_adopted_total",
		Help: "Messages of lost nodes' ingest subjects this node handed to the rules and the telemetry writer (adoption)."})
	a.adoptions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_cluster_ingest_adoptions_total",
		Help: "Adoptions of a lost node's ingest subject by result: drained, back (the node was heard again), failed (tried again), claimed (another node adopts it)."}, []string{"result"})
	for _, r := range []string{ResultDrained, ResultBack, ResultFailed, ResultClaimed} {
		a.adoptions.WithLabelValues(r)
	}
	if o.Metrics != nil {
		if err := o.Metrics.Register(a.adopted); err != nil {
			return nil, err
		}
		if err := o.Metrics.Register(a.adoptions); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Start gives the Adopter the lease's Alive (unless Options had it):
// until then Lost does nothing.
func (a *Adopter) Start(alive func(node string) bool) {
	if alive != nil && a.alive.Load() == nil {
		a.alive.Store(&alive)
	}
	if a.o.SweepAfter > 0 && a.alive.Load() != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			t := time.NewTimer(a.o.SweepAfter)
			defer t.Stop()
			select {
			case <-t.C:
			case <-a.ctx.Done():
				return
			}
			if err := a.Sweep(a.ctx); err != nil {
				a.o.Logger.Warn("ingest adoption: subjects of absent nodes not listed", "error", err)
			}
		}()
	}
}

// Sweep adopts the subjects of the stream whose node is not heard (and
// not this one), as Lost does.
func (a *Adopter) Sweep(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.o.BatchTimeout)
	defer cancel()
	st, err := a.js.Stream(ctx, a.o.Stream)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(a.o.Prefix+".>"))
	if err != nil {
		return err
	}
	for subject, n := range info.State.Subjects {
		node, ok := strings.CutPrefix(subject, a.o.Prefix+".")
		if !ok || n == 0 || strings.Contains(node, ".") || a.isAlive(node) {
			continue
		}
		a.Lost(node)
	}
	return nil
}

func (a *Adopter) isAlive(node string) bool { return (*a.alive.Load())(node) }

// Lost starts adopting node's subject unless node is this one, an
// adoption of it runs already, the Adopter is not started or is closed.
// It returns at once (it runs on the lease's goroutine).
func (a *Adopter) Lost(node string) {
	if node == "" || node == a.o.Self || a.alive.Load() == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running[node] || a.ctx.Err() != nil {
		return
	}
	a.running[node] = true
	a.wg.Add(1)
	go a.run(node)
}

// Running reports whether an adoption of node is under way (or waits).
func (a *Adopter) Running(node string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running[node]
}

// run adopts node until its subject is drained or it is heard again,
// retrying a claim held elsewhere and failed attempts.
func (a *Adopter) run(node string) {
	defer a.wg.Done()
	defer func() {
		a.mu.Lock()
		delete(a.running, node)
		a.mu.Unlock()
	}()
	log := a.o.Logger.With("lost", node)
	claimedOnce := false
	for {
		if a.isAlive(node) {
			a.adoptions.WithLabelValues(ResultBack).Inc()
			return
		}
		result, err := a.once(node, log)
		if result != "" && (result != ResultClaimed || !claimedOnce) {
			a.adoptions.WithLabelValues(result).Inc()
		}
		switch result {
		case ResultDrained, ResultBack:
			return
		case ResultClaimed:
			claimedOnce = true
		case ResultFailed:
			log.Warn("ingest adoption failed; trying again while the node is absent", "error", err)
		}
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(a.o.RetryEvery):
		}
	}
}

// once claims node and adopts its subject; "" when this node stops.
func (a *Adopter) once(node string, log *slog.Logger) (string, error) {
	select {
	case a.sem <- struct{}{}:
	case <-a.ctx.Done():
		return "", nil
	}
	defer func() { <-a.sem }()
	t, err := a.o.Open(a.ctx, node)
	if errors.Is(err, ErrClaimed) {
		return ResultClaimed, nil
	}
	if a.ctx.Err() != nil {
		if t != nil {
			_ = t.Close()
		}
		return "", nil
	}
	if err != nil {
		return ResultFailed, err
	}
	// Stop at once when the node is heard again.
	actx, stop := context.WithCancel(a.ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		tk := time.NewTicker(min(a.o.RetryEvery, 250*time.Millisecond))
		defer tk.Stop()
		for {
			select {
			case <-actx.Done():
				return
			case <-tk.C:
				if a.isAlive(node) {
					stop()
					return
				}
			}
		}
	}()
	began := time.Now()
	res, err := Adopt(actx, AdoptOptions{JS: a.js, Stream: a.o.Stream, Prefix: a.o.Prefix, Node: node, Target: t,
		BatchTimeout: a.o.BatchTimeout, Adopted: a.adopted.Inc})
	back := actx.Err() != nil && a.ctx.Err() == nil
	stop()
	<-watchDone
	err = errors.Join(err, t.Close())
	result := ResultFailed
	switch {
	case err != nil:
	case res.Drained:
		result = ResultDrained
	case back:
		result = ResultBack
	default:
		result = "" // this node stops
	}
	log.Info("ingest adoption of a lost node", "result", cmpOr(result, "stopped"), "adopted", res.Adopted,
		"replay_point", res.Last, "took", time.Since(began).Round(time.Millisecond))
	return result, err
}

// Close stops the adoptions (what they handed over is flushed and
// purged) and waits for them.
func (a *Adopter) Close() error {
	a.cancel()
	a.wg.Wait()
	return nil
}
