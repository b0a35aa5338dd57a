package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/methods"
)

type fixedLocator string

func (l fixedLocator) NodeOf(context.Context, string) (string, error) { return string(l), nil }

// localFunc is a LocalMethods made of a function.
type localFunc func(ctx context.Context, thing, method string, payload json.RawMessage, timeout time.Duration) (methods.Response, error)

func (f localFunc) InvokeHere(ctx context.Context, thing, method string, payload json.RawMessage, timeout time.Duration) (methods.Response, error) {
	return f(ctx, thing, method, payload, timeout)
}

func router(t *testing.T, n *Node, to string, maxCalls int) *MethodRouter {
	t.Helper()
	r, err := NewMethodRouter(n, fixedLocator(to), maxCalls, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestMethodRouted: a call on node a for a thing on node b is run by b;
// b's answer, its errors' kinds and its timeout come back as they are.
func TestMethodRouted(t *testing.T) {
	s := startNATS(t)
	a := join(t, s, "a", &fakeBroker{}, 0)
	b := join(t, s, "b", &fakeBroker{}, 0)
	ra := router(t, a, "b", 0)
	rb := router(t, b, "", 0)
	err := rb.Serve(localFunc(func(_ context.Context, thing, method string, payload json.RawMessage, _ time.Duration) (methods.Response, error) {
		switch method {
		case "echo":
			return methods.Response{Status: 200, Payload: payload}, nil
		case "gone":
			return methods.Response{}, core.Errorf(core.KindNotFound, "thing %q is not connected", thing)
		default:
			return methods.Response{}, &core.Error{Kind: core.KindUnavailable, Msg: "silent", Err: methods.ErrTimeout}
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	resp, routed, err := ra.Invoke(ctx, "dev", "echo", json.RawMessage(`{"x":1}`), time.Second)
	if err != nil || !routed || resp.Status != 200 || string(resp.Payload) != `{"x":1}` {
		t.Fatalf("echo = %+v %v %v; want 200 {\"x\":1} routed", resp, routed, err)
	}
	_, routed, err = ra.Invoke(ctx, "dev", "gone", nil, time.Second)
	if !routed || core.KindOf(err) != core.KindNotFound {
		t.Errorf("gone = %v (routed %v); want a not-found error", err, routed)
	}
	_, _, err = ra.Invoke(ctx, "dev", "silent", nil, time.Second)
	if !errors.Is(err, methods.ErrTimeout) || core.KindOf(err) != core.KindUnavailable {
		t.Errorf("silent = %v; want ErrTimeout", err)
	}
	if got := testutil.ToFloat64(rb.served.WithLabelValues("answered")); got != 3 {
		t.Errorf("served answered = %v; want 3", got)
	}
	if got := testutil.ToFloat64(ra.routed.WithLabelValues("ok")); got != 3 {
		t.Errorf("routed ok = %v; want 3", got)
	}
}

// TestMethodRouteNoResponder: the node the store names is gone before the
// call: not routed (the caller answers as for an offline thing), at once.
func TestMethodRouteNoResponder(t *testing.T) {
	s := startNATS(t)
	a := join(t, s, "a", &fakeBroker{}, 0)
	ra := router(t, a, "dead", 0)
	_, routed, err := ra.Invoke(t.Context(), "dev", "m", nil, 5*time.Second)
	if routed || err != nil {
		t.Fatalf("Invoke = routed %v, %v; want not routed", routed, err)
	}
	if got := testutil.ToFloat64(ra.routed.WithLabelValues("no_responder")); got != 1 {
		t.Errorf("no_responder = %v; want 1", got)
	}
}

// TestMethodRouteNodeDiesMidCall: the serving node takes the call and
// dies without answering: the caller gets a timeout answer after the
// call's timeout (plus RouteGrace), not a hang.
func TestMethodRouteNodeDiesMidCall(t *testing.T) {
	s := startNATS(t)
	a := join(t, s, "a", &fakeBroker{}, 0)
	ra := router(t, a, "b", 0)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, 1)
	if _, err := nc.Subscribe("mote.method.b", func(*nats.Msg) {
		got <- struct{}{}
		go nc.Close() // dies with the call in hand
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, routed, err := ra.Invoke(ctx, "dev", "m", nil, time.Second)
	if !routed || !errors.Is(err, methods.ErrTimeout) {
		t.Fatalf("Invoke = routed %v, %v; want a routed timeout", routed, err)
	}
	select {
	case <-got:
	default:
		t.Fatal("the serving node never received the call")
	}
	if got := testutil.ToFloat64(ra.routed.WithLabelValues("timeout")); got != 1 {
		t.Errorf("routed timeout = %v; want 1", got)
	}
}

// TestMethodRouteForgedReply: replies in the call's inbox that carry
// another call's id, or are not replies at all, are ignored; the real one
// is taken.
func TestMethodRouteForgedReply(t *testing.T) {
	s := startNATS(t)
	a := join(t, s, "a", &fakeBroker{}, 0)
	ra := router(t, a, "b", 0)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Subscribe("mote.method.b", func(m *nats.Msg) {
		var c methodCall
		if json.Unmarshal(m.Data, &c) != nil {
			return
		}
		forged, _ := json.Marshal(methodReply{ID: c.ID + "x", Status: 666, Payload: json.RawMessage(`"forged"`)})
		_ = nc.Publish(m.Reply, forged)
		_ = nc.Publish(m.Reply, []byte("not json"))
		real, _ := json.Marshal(methodReply{ID: c.ID, Status: 200, Payload: json.RawMessage(`"real"`)})
		_ = nc.Publish(m.Reply, real)
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	resp, routed, err := ra.Invoke(t.Context(), "dev", "m", nil, 5*time.Second)
	if err != nil || !routed || resp.Status != 200 || string(resp.Payload) != `"real"` {
		t.Fatalf("Invoke = %+v %v %v; want the real answer", resp, routed, err)
	}
	if got := testutil.ToFloat64(ra.ignored); got != 2 {
		t.Errorf("ignored replies = %v; want 2", got)
	}
}

// TestMethodRouteBusy: beyond maxCalls routed calls at once, a node
// refuses more as rate limited instead of queueing them.
func TestMethodRouteBusy(t *testing.T) {
	s := startNATS(t)
	a := join(t, s, "a", &fakeBroker{}, 0)
	b := join(t, s, "b", &fakeBroker{}, 0)
	ra := router(t, a, "b", 0)
	rb := router(t, b, "", 1)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	if err := rb.Serve(localFunc(func(ctx context.Context, _, _ string, _ json.RawMessage, _ time.Duration) (methods.Response, error) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return methods.Response{Status: 200}, nil
	})); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() {
		_, _, err := ra.Invoke(context.Background(), "dev", "slow", nil, 10*time.Second)
		first <- err
	}()
	<-entered
	_, routed, err := ra.Invoke(t.Context(), "dev", "more", nil, 10*time.Second)
	if !routed || core.KindOf(err) != core.KindRateLimited {
		t.Errorf("second call = routed %v, %v; want rate limited", routed, err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("first call: %v", err)
	}
	if got := testutil.ToFloat64(rb.served.WithLabelValues("busy")); got != 1 {
		t.Errorf("busy = %v; want 1", got)
	}
}

// FuzzMethodWire: a routed call or reply from the network never panics
// the parsers; what they accept has an id (and a thing and a method for a
// call) and survives a round trip through its JSON.
func FuzzMethodWire(f *testing.F) {
	f.Add([]byte(`{"id":"a1","thing":"dev","method":"spin","payload":{"rpm":1},"timeoutMs":5000}`))
	f.Add([]byte(`{"id":"a1","status":200,"payload":"ok"}`))
	f.Add([]byte(`{"id":"a1","error":"silent","kind":7,"timeout":true}`))
	f.Add([]byte(`{"id":"","thing":"x"}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, ok := parseMethodCall(data); ok {
			if c.ID == "" || c.Thing == "" || c.Method == "" {
				t.Fatalf("accepted a call without id, thing or method: %+v", c)
			}
			b, err := json.Marshal(c)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", c, err)
			}
			if c2, ok := parseMethodCall(b); !ok || c2.ID != c.ID || c2.Thing != c.Thing || c2.Method != c.Method || c2.TimeoutMS != c.TimeoutMS {
				t.Fatalf("round trip %+v → %s → %+v", c, b, c2)
			}
		}
		if r, ok := parseMethodReply(data); ok {
			if r.ID == "" {
				t.Fatalf("accepted a reply without id: %+v", r)
			}
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", r, err)
			}
			if r2, ok := parseMethodReply(b); !ok || r2.ID != r.ID || r2.Status != r.Status || r2.Error != r.Error || r2.Timeout != r.Timeout {
				t.Fatalf("round trip %+v → %s → %+v", r, b, r2)
			}
		}
	})
}

// BenchmarkMethodRouted measures the routing of one direct method call
// between two nodes on one in-process nats-server (the device's own
// answer time excluded: the serving node answers at once).
//
//	go test -run '^$' -bench BenchmarkMethodRouted -benchtime 2000x ./internal/cluster/
func BenchmarkMethodRouted(b *testing.B) {
	s := startNATS(b)
	connect := func(id string) *Node {
		n, err := Connect(Options{URL: s.ClientURL(), NodeID: id})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = n.Close() })
		return n
	}
	na, nb := connect("a"), connect("b")
	ra, err := NewMethodRouter(na, fixedLocator("b"), 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	rb, err := NewMethodRouter(nb, fixedLocator(""), 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := rb.Serve(localFunc(func(_ context.Context, _, _ string, p json.RawMessage, _ time.Duration) (methods.Response, error) {
		return methods.Response{Status: 200, Payload: p}, nil
	})); err != nil {
		b.Fatal(err)
	}
	payload := json.RawMessage(`{"level":7}`)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, routed, err := ra.Invoke(context.Background(), "dev", "set", payload, 5*time.Second); err != nil || !routed {
			b.Fatalf("routed %v: %v", routed, err)
		}
	}
}
