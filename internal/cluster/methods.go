package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus/natsbus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/methods"
)

// Direct methods across nodes
//
// A method call made on node A for a thing connected to node B (presence:
// the thing's node in the shared store) is sent as a NATS request to B,
// on "<prefix>.method.<B>", with a reply inbox of its own and a call id.
// B runs the call on its own device (methods.Service.InvokeHere, with the
// call's timeout) and replies with the device's answer or the error. A
// waits the call's timeout plus RouteGrace: a B that dies mid-call leaves
// A with a timeout answer, not a hang; a reply carrying another call id
// (forged, or late from an earlier call) is ignored and counted. A B that
// is gone before the call (no responder) means the thing is connected
// nowhere: the caller answers as for an offline thing.

// DefaultMethodCalls bounds the routed calls a node serves at once.
const DefaultMethodCalls = 1024

// replyQueue bounds the replies waiting in one call's inbox.
const replyQueue = 8

// RouteGrace is how much longer than the call's timeout a node waits for
// the answer of the node the call was routed to (which answers a timeout
// itself at the call's timeout).
const RouteGrace = 500 * time.Millisecond

// Locator tells which node a thing is connected to ("" when none): the
// presence in the shared store.
type Locator interface {
	NodeOf(ctx context.Context, thing string) (string, error)
}

// LocalMethods runs a call on a device connected to this node
// (*methods.Service).
type LocalMethods interface {
	InvokeHere(ctx context.Context, thing, method string, payload json.RawMessage, timeout time.Duration) (methods.Response, error)
}

// MethodRouter routes direct method calls to the node a thing is connected
// to (methods.Remote) and serves the calls other nodes route here.
type MethodRouter struct {
	n       *Node
	locate  Locator
	prefix  string // of call ids: random per process
	counter atomic.Uint64
	slots   chan struct{} // routed calls served at once

	routed  *prometheus.CounterVec
	served  *prometheus.CounterVec
	ignored prometheus.Counter
}

var _ methods.Remote = (*MethodRouter)(nil)

// methodCall is a routed call on the wire (JSON).
type methodCall struct {
	ID        string          `json:"id"`
	Thing     string          `json:"thing"`
	Method    string          `json:"method"`
	Payload   json.RawMessage `json:"payload"`
	TimeoutMS int64           `json:"timeoutMs"`
}

// methodReply is the serving node's answer (JSON).
type methodReply struct {
	ID      string          `json:"id"`
	Status  int             `json:"status"`
	Payload json.RawMessage `json:"payload,omitempty"`
	// Error, when set: the error's kind and message; Timeout marks the
	// device's silence (methods.ErrTimeout).
	Error   string    `json:"error,omitempty"`
	Kind    core.Kind `json:"kind,omitempty"`
	Timeout bool      `json:"timeout,omitempty"`
}

// NewMethodRouter returns the method router of node n. maxCalls bounds the
// routed calls served at once (DefaultMethodCalls when 0); beyond it a
// routed call is refused as rate limited (429 at the caller's API).
func NewMethodRouter(n *Node, locate Locator, maxCalls int, reg prometheus.Registerer) (*MethodRouter, error) {
	if maxCalls <= 0 {
		maxCalls = DefaultMethodCalls
	}
	var p [6]byte
	rand.Read(p[:])
	r := &MethodRouter{
		n: n, locate: locate, prefix: hex.EncodeToString(p[:]),
		slots: make(chan struct{}, maxCalls),
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_cluster_method_calls_routed_total",
			Help: "Direct method calls this node routed to the node their thing is connected to, by outcome (ok: an answer came back, device or error; timeout: none within the call's timeout; no_responder: that node is gone; error: not sent).",
		}, []string{"outcome"}),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_cluster_method_calls_served_total",
			Help: "Direct method calls routed here by other nodes, by outcome (answered, busy: beyond --cluster-method-calls, malformed).",
		}, []string{"outcome"}),
		ignored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mote_cluster_method_replies_ignored_total",
			Help: "Replies to routed method calls ignored because they carried another call's id or could not be read.",
		}),
	}
	for _, o := range []string{"ok", "timeout", "no_responder", "error"} {
		r.routed.WithLabelValues(o)
	}
	for _, o := range []string{"answered", "busy", "malformed"} {
		r.served.WithLabelValues(o)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.routed, r.served, r.ignored} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("cluster: metrics: %w", err)
			}
		}
	}
	return r, nil
}

func (r *MethodRouter) subject(node string) string { return r.n.opts.Prefix + ".method." + node }

// Invoke routes a call to the node the thing is connected to, if that is
// another node (methods.Remote).
func (r *MethodRouter) Invoke(ctx context.Context, thing, method string, payload json.RawMessage, timeout time.Duration) (methods.Response, bool, error) {
	node, err := r.locate.NodeOf(ctx, thing)
	if err != nil || node == "" || node == r.n.opts.NodeID {
		return methods.Response{}, false, nil // answered here as today
	}
	id := r.prefix + strconv.FormatUint(r.counter.Add(1), 36)
	body, err := json.Marshal(methodCall{ID: id, Thing: thing, Method: method, Payload: payload, TimeoutMS: timeout.Milliseconds()})
	if err != nil {
		r.routed.WithLabelValues("error").Inc()
		return methods.Response{}, true, err
	}
	nc := r.n.nb.Conn()
	inbox := nc.NewInbox() // one per call: no other call's reply lands here
	// A small queue (SubscribeSync's would be 512 KB a call): a flood of
	// forged replies beyond it is dropped by NATS.
	replies := make(chan *nats.Msg, replyQueue)
	sub, err := nc.ChanSubscribe(inbox, replies)
	if err != nil {
		r.routed.WithLabelValues("error").Inc()
		return methods.Response{}, true, &core.Error{Kind: core.KindUnavailable, Msg: "could not route the call to node " + node, Err: err}
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(r.subject(node), inbox, body); err != nil {
		r.routed.WithLabelValues("error").Inc()
		return methods.Response{}, true, &core.Error{Kind: core.KindUnavailable, Msg: "could not route the call to node " + node, Err: err}
	}
	wait, cancel := context.WithTimeout(ctx, timeout+RouteGrace)
	defer cancel()
	for {
		var msg *nats.Msg
		select {
		case msg = <-replies:
		case <-wait.Done():
			if ctx.Err() != nil {
				r.routed.WithLabelValues("error").Inc()
				return methods.Response{}, true, &core.Error{Kind: core.KindUnavailable, Msg: "call abandoned", Err: ctx.Err()}
			}
			r.routed.WithLabelValues("timeout").Inc()
			return methods.Response{}, true, &core.Error{Kind: core.KindUnavailable,
				Msg: "thing " + strconv.Quote(thing) + " on node " + node + " did not answer method " + strconv.Quote(method) + " within " + timeout.String(),
				Err: methods.ErrTimeout}
		}
		if len(msg.Data) == 0 && msg.Header.Get("Status") == "503" {
			// No node serves that subject: the node the store names is
			// gone, so the thing is connected nowhere.
			r.routed.WithLabelValues("no_responder").Inc()
			return methods.Response{}, false, nil
		}
		rep, ok := parseMethodReply(msg.Data)
		if !ok || rep.ID != id {
			r.ignored.Inc()
			continue
		}
		r.routed.WithLabelValues("ok").Inc()
		switch {
		case rep.Timeout:
			return methods.Response{}, true, &core.Error{Kind: core.KindUnavailable, Msg: rep.Error, Err: methods.ErrTimeout}
		case rep.Error != "":
			return methods.Response{}, true, &core.Error{Kind: rep.Kind, Msg: rep.Error}
		}
		return methods.Response{Status: rep.Status, Payload: rep.Payload}, true, nil
	}
}

// Serve answers the calls other nodes route to this node with local. It
// never blocks the NATS delivery goroutine: each call runs on its own
// goroutine, at most maxCalls at once. The calls still running when the
// node closes end by their own timeout.
func (r *MethodRouter) Serve(local LocalMethods) error {
	nc := r.n.nb.Conn()
	sub, err := nc.Subscribe(r.subject(r.n.opts.NodeID), func(msg *nats.Msg) {
		c, ok := parseMethodCall(msg.Data)
		if msg.Reply == "" || !ok {
			r.served.WithLabelValues("malformed").Inc()
			return
		}
		select {
		case r.slots <- struct{}{}:
		default:
			r.served.WithLabelValues("busy").Inc()
			r.reply(msg.Reply, methodReply{ID: c.ID, Kind: core.KindRateLimited, Error: "node " + r.n.opts.NodeID + " serves too many routed method calls"})
			return
		}
		go func() {
			defer func() { <-r.slots }()
			timeout := time.Duration(c.TimeoutMS) * time.Millisecond
			wait := timeout
			if wait <= 0 || wait > methods.MaxTimeout {
				wait = methods.MaxTimeout // InvokeHere refuses such a timeout
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait+RouteGrace)
			defer cancel()
			resp, err := local.InvokeHere(ctx, c.Thing, c.Method, c.Payload, timeout)
			rep := methodReply{ID: c.ID, Status: resp.Status, Payload: resp.Payload}
			if err != nil {
				rep = methodReply{ID: c.ID, Kind: core.KindOf(err), Error: err.Error(), Timeout: errors.Is(err, methods.ErrTimeout)}
				var ce *core.Error
				if errors.As(err, &ce) {
					rep.Error = ce.Msg
				}
			}
			r.served.WithLabelValues("answered").Inc()
			r.reply(msg.Reply, rep)
		}()
	})
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	r.n.mu.Lock()
	r.n.subs = append(r.n.subs, sub)
	r.n.mu.Unlock()
	return nc.FlushTimeout(natsbus.DefaultFlushTimeout)
}

// parseMethodCall reads a routed call: JSON with a call id, a thing and a
// method (InvokeHere checks their names, the payload and the timeout).
func parseMethodCall(data []byte) (methodCall, bool) {
	var c methodCall
	if json.Unmarshal(data, &c) != nil || c.ID == "" || c.Thing == "" || c.Method == "" {
		return methodCall{}, false
	}
	return c, true
}

// parseMethodReply reads a serving node's reply: JSON with a call id.
func parseMethodReply(data []byte) (methodReply, bool) {
	var r methodReply
	if json.Unmarshal(data, &r) != nil || r.ID == "" {
		return methodReply{}, false
	}
	return r, true
}

func (r *MethodRouter) reply(to string, rep methodReply) {
	b, err := json.Marshal(rep)
	if err != nil {
		return
	}
	_ = r.n.nb.Conn().Publish(to, b)
}
