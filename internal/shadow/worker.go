package shadow

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// request is one shadow operation, from MQTT (prefix set) or from an API
// call (reply set).
type request struct {
	op      op
	thing   string
	name    string
	prefix  string // MQTT topic prefix it came on; "" for an API call
	payload []byte
	reply   chan reply // API call: receives the outcome
	retries int        // times run again after a version conflict in the store
}

// maxConflictRetries bounds how often one request is run again after
// another node changed its shadow first (then it is answered 409).
const maxConflictRetries = 16

type reply struct {
	body []byte
	err  *Error
}

// entry is a cached shadow, owned by one worker.
type entry struct {
	thing, name string
	doc         *Document // nil: the shadow does not exist
	version     int64     // when doc is nil: the version of the deleted shadow (0 if none)
	pending     int       // ops of this entry in the commit pipeline (worker only)
	broken      atomic.Bool
	// conflict: another node changed the stored shadow (the
	// compare-and-set failed); the entry's ops run again on a fresh read.
	conflict atomic.Bool
}

// pendingOp is a request whose answer waits for the commit of its write
// (or, with no write, of earlier writes of the same shadow).
type pendingOp struct {
	w      *worker
	e      *entry
	req    *request
	write  *store.ShadowWrite // nil: an answer that only waits its turn
	out    outcome
	failed *Error // set by the committer
}

// outcome is what a request produced: a response body or an error, and
// for updates the /delta and /documents messages.
type outcome struct {
	body      []byte
	err       *Error
	token     string
	hasToken  bool
	delta     []byte
	documents []byte
	changed   bool   // an update or delete was committed
	stored    []byte // the stored document after it; nil: deleted
}

// worker serializes the requests of the shadows of its things.
type worker struct {
	s      *Service
	reqs   chan *request
	wake   chan struct{}
	quit   chan struct{}
	things map[string]map[string]*entry // thing → name → entry
	count  int
	limit  int
	// inflight counts pendingOps handed to the committer and not yet back.
	inflight int

	mu     sync.Mutex // guards done and forget
	done   []*pendingOp
	forget []string
	spare  []*pendingOp
}

func (w *worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// deliver hands back committed (or failed) ops; called by the committer.
func (w *worker) deliver(ops []*pendingOp) {
	w.mu.Lock()
	w.done = append(w.done, ops...)
	w.mu.Unlock()
	w.signal()
}

func (w *worker) run() {
	for {
		// Completions and forgotten things first: they free the queue
		// and must apply before later requests.
		select {
		case <-w.wake:
			w.drainInbox()
		default:
		}
		reqs := w.reqs
		if w.inflight >= maxInflight {
			reqs = nil // wait for commits first
		}
		select {
		case r := <-reqs:
			w.handle(r)
		case <-w.wake:
			w.drainInbox()
		case <-w.quit:
			w.shutdown()
			return
		}
	}
}

// shutdown answers every queued request, then waits for their commits.
func (w *worker) shutdown() {
	for {
		select {
		case r := <-w.reqs:
			w.handle(r)
			continue
		default:
		}
		break
	}
	for w.inflight > 0 {
		<-w.wake
		w.drainInbox()
	}
}

func (w *worker) drainInbox() {
	w.mu.Lock()
	done, forget := w.done, w.forget
	w.done, w.forget = w.spare[:0], nil
	w.mu.Unlock()
	for _, t := range forget {
		if m, ok := w.things[t]; ok {
			w.count -= len(m)
			delete(w.things, t)
		}
	}
	for i, p := range done {
		w.complete(p)
		done[i] = nil
	}
	w.spare = done[:0]
}

// complete answers an op that came back from the committer.
func (w *worker) complete(p *pendingOp) {
	w.inflight--
	p.e.pending--
	if p.failed != nil {
		// The cached state may hold changes that were not stored: forget
		// it, so the next request reads the store.
		if m := w.things[p.e.thing]; m != nil && m[p.e.name] == p.e {
			delete(m, p.e.name)
			w.count--
		}
		if p.failed == errConflict {
			// Another node wrote the shadow first: run the request again
			// on what is stored now, so that versions never fork.
			w.s.conflicts.Add(1)
			if p.req.retries < maxConflictRetries {
				p.req.retries++
				w.handle(p.req)
				return
			}
			p.failed = ErrVersionConflict
		}
		w.answer(p.req, outcome{err: p.failed, token: p.out.token, hasToken: p.out.hasToken})
		return
	}
	w.answer(p.req, p.out)
}

// lookup returns the cached entry of a shadow, reading it from the store
// on a miss.
func (w *worker) lookup(thing, name string) (*entry, *Error) {
	m := w.things[thing]
	if e, ok := m[name]; ok {
		return e, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sh, err := w.s.opts.Store.Get(ctx, thing, name)
	e := &entry{thing: thing, name: name}
	switch {
	case err == nil:
		doc, perr := ParseDocument(sh.Document)
		if perr != nil {
			w.s.log.Error("shadow: unreadable stored document", "thing", thing, "shadow", name, "error", perr)
			return nil, ErrInternal
		}
		doc.Version = sh.Version
		e.doc = doc
	case core.IsNotFound(err):
		e.version = sh.Version // a tombstone's, or 0
	default:
		w.s.log.Error("shadow: read from the store", "thing", thing, "shadow", name, "error", err)
		return nil, ErrInternal
	}
	if w.count >= w.limit {
		w.evict()
	}
	if m == nil {
		m = make(map[string]*entry, 1)
		w.things[thing] = m
	}
	m[name] = e
	w.count++
	return e, nil
}

// mayBeStale reports whether a request would answer from e without the
// store's compare-and-set catching a stale copy: a get, a delete, and an
// update whose version differs from the cached one (a 409 from the cache).
// An update that matches the cached version is checked by the store.
func mayBeStale(o op, req *Request, e *entry) bool {
	switch o {
	case opGet, opDelete:
		return true
	case opUpdate:
		v := e.version
		if e.doc != nil {
			v = e.doc.Version
		}
		return req.HasVersion && req.Version != v
	}
	return false
}

// drop forgets a cached shadow with nothing pending.
func (w *worker) drop(e *entry) {
	if m := w.things[e.thing]; m != nil && m[e.name] == e {
		delete(m, e.name)
		w.count--
		if len(m) == 0 {
			delete(w.things, e.thing)
		}
	}
}

// evict drops one cached shadow with nothing pending.
func (w *worker) evict() {
	for t, m := range w.things {
		for n, e := range m {
			if e.pending == 0 {
				delete(m, n)
				w.count--
				if len(m) == 0 {
					delete(w.things, t)
				}
				return
			}
		}
	}
}

// handle runs one request against its shadow's cached state.
func (w *worker) handle(r *request) {
	s := w.s
	now := s.now()
	var (
		req  *Request
		perr *Error
	)
	if r.op == opUpdate {
		req, perr = ParseUpdate(r.payload, s.opts.MaxSize)
	} else {
		req, perr = ParseRequest(r.payload)
	}
	out := outcome{token: req.ClientToken, hasToken: req.HasToken}
	if perr == nil {
		perr = ValidateName(r.name)
	}
	if perr != nil {
		out.err = perr
		w.answer(r, out)
		return
	}
	e, lerr := w.lookup(r.thing, r.name)
	if lerr == nil && s.opts.Shared && e.pending == 0 && mayBeStale(r.op, req, e) {
		// Another node may have changed the shadow without this node
		// hearing of it (its answer was lost with it): what this request
		// answers from the cache is read from the store again.
		w.drop(e)
		e, lerr = w.lookup(r.thing, r.name)
	}
	if lerr != nil {
		out.err = lerr
		w.answer(r, out)
		return
	}

	var write *store.ShadowWrite
	switch r.op {
	case opGet:
		if e.doc == nil {
			out.err = ErrNoShadow(r.thing, r.name)
		} else {
			out.body = e.doc.GetBody(req.ClientToken, req.HasToken, now)
		}
	case opDelete:
		if e.doc == nil {
			out.err = ErrNoShadow(r.thing, r.name)
			break
		}
		v := e.doc.Version
		out.body = DeleteBody(v, req.ClientToken, req.HasToken, now)
		write = &store.ShadowWrite{Thing: r.thing, Name: r.name, Version: v, Deleted: true, At: now,
			Checked: true, IfVersion: v}
		out.changed = true
		e.doc, e.version = nil, v
	case opUpdate:
		prev, prevDeleted := e.version, e.doc == nil
		if e.doc != nil {
			prev = e.doc.Version
		}
		a, err := Apply(e.doc, e.version, req, now, s.opts.MaxSize)
		if err != nil {
			out.err = err
			break
		}
		out.body, out.delta, out.documents = a.Accepted, a.Delta, a.Documents
		write = &store.ShadowWrite{Thing: r.thing, Name: r.name, Version: a.Doc.Version, Document: a.Stored, At: now,
			Checked: true, IfVersion: prev, IfDeleted: prevDeleted}
		out.changed, out.stored = true, a.Stored
		e.doc = a.Doc
	}
	if write == nil && e.pending == 0 {
		w.answer(r, out) // nothing to wait for
		return
	}
	e.pending++
	w.inflight++
	s.commit.add(&pendingOp{w: w, e: e, req: r, write: write, out: out})
}

// answer sends the outcome of a request: to the API caller, or as MQTT
// responses; an accepted update also publishes /delta and /documents
// under both prefixes.
func (w *worker) answer(r *request, out outcome) {
	s := w.s
	if r.reply != nil {
		r.reply <- reply{body: out.body, err: out.err}
	} else if out.err != nil {
		s.publish(responseTopic(r.prefix, r.thing, r.name, r.op, "rejected"), ErrorBody(out.err, out.token, out.hasToken, s.now()))
	} else {
		s.publish(responseTopic(r.prefix, r.thing, r.name, r.op, "accepted"), out.body)
	}
	if out.err != nil {
		return
	}
	if out.changed && s.opts.OnChange != nil {
		s.opts.OnChange(r.thing, r.name, out.stored)
	}
	if r.reply != nil && r.op != opGet {
		// A change through the API is announced on MQTT as well.
		for _, p := range [...]string{MotePrefix, AWSPrefix} {
			s.publish(responseTopic(p, r.thing, r.name, r.op, "accepted"), out.body)
		}
	}
	for _, p := range [...]string{MotePrefix, AWSPrefix} {
		if out.documents != nil {
			s.publish(responseTopic(p, r.thing, r.name, opUpdate, "documents"), out.documents)
		}
		if out.delta != nil {
			s.publish(responseTopic(p, r.thing, r.name, opUpdate, "delta"), out.delta)
		}
	}
}
