package broker

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/policy"
)

// The tests in this file drive overlapping policy refreshes in a set order
// with a policy source that can hold one read, and check that the
// evaluator a connection ends with is compiled from the newest policies.

// anyThing authenticates every client as the thing named by its username.
type anyThing struct{}

func (anyThing) Secret(_ context.Context, user, _ string) (auth.Identity, error) {
	return auth.Identity{Thing: user, Credential: "c-" + user, Method: "secret"}, nil
}

func (anyThing) Certificate(context.Context, *x509.Certificate) (auth.Identity, error) {
	return auth.Identity{}, auth.ErrUnknownCertificate
}

// heldPolicies serves one document that allows publishing on a topic. When
// armed, the next read takes its snapshot, says so on entered and waits for
// release before it returns: a slow store read caught mid-flight.
type heldPolicies struct {
	mu      sync.Mutex
	topic   string
	entered chan string
	release chan struct{}
}

func (p *heldPolicies) set(topic string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.topic = topic
}

// hold arms the next read.
func (p *heldPolicies) hold() (entered <-chan string, release chan<- struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.entered, p.release = make(chan string, 1), make(chan struct{})
	return p.entered, p.release
}

func (p *heldPolicies) PoliciesFor(ctx context.Context, _ string) ([]policy.Document, error) {
	p.mu.Lock()
	topic, entered, release := p.topic, p.entered, p.release
	p.entered, p.release = nil, nil
	p.mu.Unlock()
	if entered != nil {
		entered <- topic
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return []policy.Document{{Statements: []policy.Statement{{
		Effect: policy.Allow, Actions: []policy.Action{policy.Publish}, Topics: []string{topic},
	}}}}, nil
}

func startRefreshBroker(t *testing.T, src PolicySource) *Broker {
	t.Helper()
	b, err := New(Options{
		MQTTAddr: "127.0.0.1:0",
		Auth:     anyThing{},
		Policies: src,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// connect3 connects an MQTT 3.1.1 client as thing dev (it blocks until the
// CONNACK).
func connect3(b *Broker, id string) (paho3.Client, error) {
	addr, _ := b.Addrs()
	o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetUsername("dev").SetPassword("x").SetAutoReconnect(false).SetConnectRetry(false)
	c := paho3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect %s: timed out", id)
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect %s: %w", id, err)
	}
	return c, nil
}

// liveSession returns the session of a client once it is established
// (mochi runs OnSessionEstablished after it has sent the CONNACK).
func liveSession(t *testing.T, b *Broker, id string) *session {
	t.Helper()
	var s *session
	waitFor(t, "the session of "+id, func() bool {
		if v, ok := b.sessions.Load(id); ok {
			s = v.(*session)
		}
		return s != nil
	})
	return s
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// allowsOnly reports whether ev allows publishing on topic and on none of
// the others.
func allowsOnly(ev *policy.Evaluator, topic string, others ...string) bool {
	if !ev.CanPublish(topic) {
		return false
	}
	for _, o := range others {
		if ev.CanPublish(o) {
			return false
		}
	}
	return true
}

// Policy B changes while the refresh for policy A is still reading: the
// refresh for A must not swap its older evaluator in after B's.
func TestRefreshPoliciesOverlapKeepsNewest(t *testing.T) {
	src := &heldPolicies{topic: "v1"}
	b := startRefreshBroker(t, src)
	c, err := connect3(b, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	s := liveSession(t, b, "dev-1")

	// Refresh 1 (policy A → "v2") reads its snapshot and is held.
	src.set("v2")
	entered, release := src.hold()
	b.RefreshPolicies("")
	if got := receive(t, entered, "the first refresh to read"); got != "v2" {
		t.Fatalf("first refresh read %q; want v2", got)
	}
	// Refresh 2 (policy B → "v3") runs to the end meanwhile.
	src.set("v3")
	b.RefreshPolicies("")
	waitFor(t, "the second refresh to swap in v3", func() bool { return s.ev.Load().CanPublish("v3") })

	// Refresh 1 now finishes with its older documents; Close waits for it.
	close(release)
	c.Disconnect(0)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if ev := s.ev.Load(); !allowsOnly(ev, "v3", "v1", "v2") {
		t.Errorf("after overlapping refreshes the client may publish v1=%v v2=%v v3=%v; want only v3 (a stale evaluator was swapped in last)",
			ev.CanPublish("v1"), ev.CanPublish("v2"), ev.CanPublish("v3"))
	}
}

// A policy change while a client is connecting (its evaluator compiled,
// its session not yet established, so the refresh does not see it) must
// still reach that client.
func TestRefreshPoliciesDuringConnect(t *testing.T) {
	src := &heldPolicies{topic: "v1"}
	b := startRefreshBroker(t, src)

	entered, release := src.hold()
	type result struct {
		c   paho3.Client
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := connect3(b, "dev-1")
		done <- result{c, err}
	}()
	if got := receive(t, entered, "the connect to read policies"); got != "v1" {
		t.Fatalf("connect read %q; want v1", got)
	}
	src.set("v2")
	b.RefreshPolicies("") // finds no established session of dev yet
	close(release)
	r := receive(t, done, "the connect to finish")
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.Disconnect(0)
	s := liveSession(t, b, "dev-1")
	waitFor(t, "the connected client to get the v2 policy", func() bool { return allowsOnly(s.ev.Load(), "v2", "v1") })
}

// Many refreshes and connects at once, then one last change: every
// connected client must end with the last policy.
func TestRefreshPoliciesConcurrent(t *testing.T) {
	src := &heldPolicies{topic: "v0"}
	b := startRefreshBroker(t, src)
	const clients, changes = 8, 50
	var wg sync.WaitGroup
	conns := make(chan paho3.Client, clients)
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := connect3(b, fmt.Sprintf("dev-%d", i))
			if err != nil {
				errs <- err
				return
			}
			conns <- c
		}()
	}
	for i := 1; i <= changes; i++ {
		src.set(fmt.Sprintf("v%d", i))
		if i%2 == 0 {
			b.RefreshPolicies("dev")
		} else {
			b.RefreshPolicies("")
		}
	}
	wg.Wait()
	close(conns)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for c := range conns {
		defer c.Disconnect(0)
	}
	last := fmt.Sprintf("v%d", changes)
	for i := range clients {
		s := liveSession(t, b, fmt.Sprintf("dev-%d", i))
		waitFor(t, fmt.Sprintf("dev-%d to get %s", i, last), func() bool { return allowsOnly(s.ev.Load(), last, "v0", "v1") })
	}
}
