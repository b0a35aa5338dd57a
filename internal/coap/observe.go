package coap

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/moteiot/mote/internal/commands"
)

// ShadowFeed sits between the shadow service and the broker (it is the
// service's Publisher): it passes every response on and queues the
// shadows that changed, for the CoAP server to notify their observers.
// The queue is bounded; a change that finds it full is dropped and
// counted (its observers see the next one).
type ShadowFeed struct {
	next    publisher
	ch      chan shadowRef
	dropped atomic.Int64
}

type publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

type shadowRef struct{ thing, name string }

// NewShadowFeed returns a feed that publishes through next with a queue
// of size changes (default 4096).
func NewShadowFeed(next publisher, size int) *ShadowFeed {
	if size <= 0 {
		size = 4096
	}
	return &ShadowFeed{next: next, ch: make(chan shadowRef, size)}
}

// Publish passes a shadow response to the broker and, for a change
// (update/documents, delete/accepted), queues its shadow. It never blocks.
func (f *ShadowFeed) Publish(topic string, payload []byte, retain bool, qos byte) error {
	if ref, ok := changedShadow(topic); ok {
		select {
		case f.ch <- ref:
		default:
			f.dropped.Add(1)
		}
	}
	return f.next.Publish(topic, payload, retain, qos)
}

// Dropped is how many changes found the queue full.
func (f *ShadowFeed) Dropped() int64 { return f.dropped.Load() }

// changedShadow parses $mote/things/{t}/shadow[/name/{n}]/update/documents
// and {$aws|$mote}/things/{t}/shadow[/name/{n}]/delete/accepted. The
// shadow service publishes every /documents under both prefixes: only
// the $mote one counts, so that one change makes one notification (a
// delete is answered under the prefix of its request only).
func changedShadow(topic string) (shadowRef, bool) {
	var rest string
	aws := false
	switch {
	case strings.HasPrefix(topic, "$aws/things/"):
		rest, aws = topic[len("$aws/things/"):], true
	case strings.HasPrefix(topic, "$mote/things/"):
		rest = topic[len("$mote/things/"):]
	default:
		return shadowRef{}, false
	}
	p := strings.Split(rest, "/")
	if len(p) < 4 || p[1] != "shadow" {
		return shadowRef{}, false
	}
	ref := shadowRef{thing: p[0]}
	ops := p[2:]
	if ops[0] == "name" {
		if len(ops) < 4 {
			return shadowRef{}, false
		}
		ref.name, ops = ops[1], ops[2:]
	}
	if len(ops) != 2 || !(!aws && ops[0] == "update" && ops[1] == "documents" || ops[0] == "delete" && ops[1] == "accepted") {
		return shadowRef{}, false
	}
	return ref, true
}

// observation is one registered observer (RFC 7641): a session and the
// token it registered with.
type observation struct {
	s      *Server
	cc     *udpclient.Conn
	token  []byte
	thing  string
	kind   string // "shadow" or "commands"
	name   string // the shadow
	accept message.MediaType
	seq    atomic.Uint32
	ctx    context.Context
	cancel context.CancelFunc
}

// observers holds the observations by session and token, and counts them
// per thing.
type observers struct {
	s       *Server
	mu      sync.Mutex
	byKey   map[obsKey]*observation
	byThing map[string]int
	wg      sync.WaitGroup
}

type obsKey struct {
	cc    *udpclient.Conn
	token string
}

func newObservers(s *Server) *observers {
	return &observers{s: s, byKey: map[obsKey]*observation{}, byThing: map[string]int{}}
}

// add registers an observation unless the thing holds MaxObservers
// already (then the request is answered as a plain GET, RFC 7641 §4.1).
// A registration with a token already observed replaces it.
func (o *observers) add(q *request, kind, name string) (*observation, uint32, bool) {
	key := obsKey{q.cc, string(q.r.Token())}
	o.mu.Lock()
	if old, ok := o.byKey[key]; ok {
		o.removeLocked(key, old)
	}
	if o.byThing[q.thing] >= o.s.opts.MaxObservers {
		o.mu.Unlock()
		o.s.m.observeRefused.Inc()
		o.s.refusalLog("observation refused: coap-max-observers reached", "thing", q.thing)
		return nil, 0, false
	}
	ctx, cancel := context.WithCancel(context.Background())
	ob := &observation{s: o.s, cc: q.cc, token: append([]byte(nil), q.r.Token()...), thing: q.thing, kind: kind, name: name, ctx: ctx, cancel: cancel}
	ob.accept = formatJSON
	if a, err := q.r.Accept(); err == nil && a == formatCBOR {
		ob.accept = formatCBOR
	}
	ob.seq.Store(2) // the registration's answer carries 2; notifications count up
	o.byKey[key] = ob
	o.byThing[q.thing]++
	o.mu.Unlock()
	o.s.m.observers.WithLabelValues(kind).Inc()
	return ob, 2, true
}

func (o *observers) addShadow(q *request, name string) (uint32, bool) {
	_, seq, ok := o.add(q, "shadow", name)
	return seq, ok
}

func (o *observers) addCommands(q *request) (*observation, uint32, bool) {
	return o.add(q, "commands", "")
}

func (o *observers) removeLocked(key obsKey, ob *observation) {
	delete(o.byKey, key)
	if o.byThing[ob.thing]--; o.byThing[ob.thing] <= 0 {
		delete(o.byThing, ob.thing)
	}
	ob.cancel()
	o.s.m.observers.WithLabelValues(ob.kind).Dec()
}

// remove ends the observation of a session's token (Observe: 1, or a
// failed notification).
func (o *observers) remove(cc *udpclient.Conn, token []byte) {
	key := obsKey{cc, string(token)}
	o.mu.Lock()
	if ob, ok := o.byKey[key]; ok {
		o.removeLocked(key, ob)
	}
	o.mu.Unlock()
}

// connClosed ends the observations of a session.
func (o *observers) connClosed(cc *udpclient.Conn) {
	o.mu.Lock()
	for k, ob := range o.byKey {
		if k.cc == cc {
			o.removeLocked(k, ob)
		}
	}
	o.mu.Unlock()
}

// closeAll ends every observation and waits for their goroutines.
func (o *observers) closeAll() {
	o.mu.Lock()
	for k, ob := range o.byKey {
		o.removeLocked(k, ob)
	}
	o.mu.Unlock()
	o.wg.Wait()
}

// shadowObservers returns the observations of one shadow.
func (o *observers) shadowObservers(ref shadowRef) []*observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.byThing[ref.thing] == 0 {
		return nil
	}
	var out []*observation
	for _, ob := range o.byKey {
		if ob.kind == "shadow" && ob.thing == ref.thing && ob.name == ref.name {
			out = append(out, ob)
		}
	}
	return out
}

// runFeed notifies the observers of every shadow that changed, until the
// server stops. It reads the shadow once per change and sends each
// observer a non-confirmable notification (no wait on a peer).
func (o *observers) runFeed(f *ShadowFeed) {
	for {
		select {
		case <-o.s.stop:
			return
		case ref := <-f.ch:
			obs := o.shadowObservers(ref)
			if len(obs) == 0 || o.s.opts.Shadows == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), o.s.opts.RequestTimeout)
			doc, err := o.s.opts.Shadows.Get(ctx, ref.thing, ref.name)
			cancel()
			code := codes.Content
			if err != nil {
				if !isShadowNotFound(err) {
					continue
				}
				code, doc = codes.NotFound, nil // deleted
			}
			for _, ob := range obs {
				ob.notify(code, message.NonConfirmable, doc)
			}
		}
	}
}

// notifyBlock is the largest notification body sent in one datagram
// (the server's block size, SZX1024); a larger one goes block-wise.
const notifyBlock = 1024

// notify sends one notification; a failure ends the observation.
func (ob *observation) notify(code codes.Code, typ message.Type, doc []byte) bool {
	if ob.ctx.Err() != nil {
		return false
	}
	cf, body := formatJSON, doc
	if doc != nil && ob.accept == formatCBOR {
		if c, err := jsonToCBOR(doc); err == nil {
			cf, body = formatCBOR, c
		}
	}
	ctx, cancel := context.WithTimeout(ob.ctx, ob.s.opts.RequestTimeout)
	defer cancel()
	m := ob.cc.AcquireMessage(ctx)
	defer ob.cc.ReleaseMessage(m)
	m.SetCode(code)
	m.SetToken(ob.token)
	m.SetType(typ)
	m.SetObserve(ob.seq.Add(1) & 0xFFFFFF)
	if body != nil {
		m.SetContentFormat(cf)
		m.SetBody(bytes.NewReader(body))
	}
	var err error
	if typ == message.NonConfirmable {
		// Straight to the session: go-coap's block-wise writer drops
		// the type (the notification would go confirmable, and the
		// shared feed goroutine wait for each observer's ACK). A body
		// over a block goes as its first block; the client fetches the
		// rest with GET and Block2 (RFC 7959 §2.6), which the handler
		// answers as any block-wise GET.
		if len(body) > notifyBlock {
			v, _ := blockwise.EncodeBlockOption(blockwise.SZX1024, 0, true)
			m.SetOptionUint32(message.Block2, v)
			m.SetOptionUint32(message.Size2, uint32(len(body)))
			m.SetBody(bytes.NewReader(body[:notifyBlock]))
		}
		m.SetMessageID(ob.cc.GetMessageID())
		err = ob.cc.Session().WriteMessage(m)
	} else {
		err = ob.cc.WriteMessage(m)
	}
	if err != nil {
		ob.s.m.notifications.WithLabelValues(ob.kind, "failed").Inc()
		ob.s.obs.remove(ob.cc, ob.token)
		return false
	}
	ob.s.m.notifications.WithLabelValues(ob.kind, "sent").Inc()
	return true
}

// start runs a commands observation: it waits for the thing's next
// commands (taking them as delivered, as the HTTP long poll does) and
// sends them in a confirmable notification, until the observation ends.
func (ob *observation) start() {
	o := ob.s.obs
	o.wg.Go(func() {
		for ob.ctx.Err() == nil {
			began := time.Now()
			list, err := ob.s.opts.Commands.Poll(ob.ctx, ob.thing, commands.MaxWait)
			if err != nil || (len(list) == 0 && time.Since(began) < time.Second) {
				// A store failure, or the service shutting down: try
				// again a little later, never in a tight loop.
				select {
				case <-ob.ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
			if len(list) == 0 {
				continue
			}
			if !ob.notify(codes.Content, message.Confirmable, commandBody(list)) {
				return
			}
		}
	})
}
