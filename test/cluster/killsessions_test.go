package cluster_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/moteiot/mote/internal/daemontest"
)

// killSessions is TestKill9's persistent-session workload (issue 12:
// "sessions resumed on other nodes got their queued messages"): two
// subscribers with persistent sessions (MQTT 3.1.1, Clean Session 0, QoS 1)
// on the node that is killed, two publishers on the other nodes that
// publish to them all along. The subscribers stay away a while after the
// kill — their sessions are held by no node, their messages only in the
// relay stream — then resume on the survivors. At the end each got every
// message a publisher had a PUBACK for, at least once.
type killSessions struct {
	subs    []*killSub
	secrets []string
	addrs   func() []string
	killed  int
	nodes   []*moteProc // for their metrics and logs
	dir     string

	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	acked []map[string]bool // by subscriber: payloads acknowledged to a publisher
	total atomic.Int64
}

type killSub struct {
	name  string
	topic string
	cl    paho.Client
	mu    sync.Mutex
	got   map[string]int
}

func (s *killSub) handle(_ paho.Client, m paho.Message) {
	if m.Topic() != s.topic {
		return
	}
	s.mu.Lock()
	s.got[string(m.Payload())]++
	s.mu.Unlock()
}

// dialSession connects sub with Clean Session 0 (its messages go to
// handle, also those of a resumed subscription), or returns nil.
func dialSession(addr string, sub *killSub, secret string) paho.Client {
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(sub.name).
		SetUsername(sub.name).SetPassword(secret).SetCleanSession(false).SetAutoReconnect(false).
		SetConnectRetry(false).SetOrderMatters(false).SetConnectTimeout(3 * time.Second).
		SetDefaultPublishHandler(sub.handle)
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return nil
	}
	return cl
}

// startKillSessions connects the subscribers to node killed and starts
// the publishers on the other nodes.
func startKillSessions(t *testing.T, dir string, nodes []*moteProc, token string, addrs func() []string, killed int) *killSessions {
	t.Helper()
	api(t, nodes[0].api, token, "POST", "/api/v1/policies", map[string]any{"name": "k9s", "document": map[string]any{
		"statements": []map[string]any{{"effect": "allow", "actions": []string{"publish", "subscribe", "receive"}, "topics": []string{"k9s/#"}}},
	}}, nil)
	thing := func(name string) string {
		api(t, nodes[0].api, token, "POST", "/api/v1/things", map[string]any{"name": name, "policies": []string{"k9s"}}, nil)
		var cred struct {
			Secret string `json:"secret"`
		}
		api(t, nodes[0].api, token, "POST", "/api/v1/things/"+name+"/credentials", map[string]any{"type": "secret"}, &cred)
		return cred.Secret
	}
	ks := &killSessions{addrs: addrs, killed: killed, nodes: nodes, dir: dir, stop: make(chan struct{})}
	for i := range 2 {
		sub := &killSub{name: fmt.Sprintf("k9s-sub-%d", i), topic: fmt.Sprintf("k9s/%d/in", i), got: map[string]int{}}
		secret := thing(sub.name)
		if sub.cl = dialSession(addrs()[killed], sub, secret); sub.cl == nil {
			t.Fatalf("%s: no connection to node-%d", sub.name, killed)
		}
		if tok := sub.cl.Subscribe(sub.topic, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: subscribe: %v", sub.name, tok.Error())
		}
		ks.subs = append(ks.subs, sub)
		ks.secrets = append(ks.secrets, secret)
		ks.acked = append(ks.acked, map[string]bool{})
	}
	// Publishers: one on each other node, to both subscribers in turn.
	for p := range 3 {
		if p == killed {
			continue
		}
		name := fmt.Sprintf("k9s-pub-%d", p)
		secret := thing(name)
		ks.wg.Add(1)
		go func() {
			defer ks.wg.Done()
			ks.publish(name, secret, p)
		}()
	}
	// The subscriptions work on the node to be killed, and it wrote the
	// sessions to the store (every 100 ms; a session younger than that
	// when its node dies is lost: docs/cluster.md).
	daemontest.WaitFor(t, 60*time.Second, func() error {
		for _, sub := range ks.subs {
			sub.mu.Lock()
			n := len(sub.got)
			sub.mu.Unlock()
			if n < 25 {
				return fmt.Errorf("%s: %d messages before the kill; want 25", sub.name, n)
			}
		}
		return nil
	})
	return ks
}

// publish sends QoS 1 messages from a publisher on node home (another
// node when it cannot connect) until stop, recording each acknowledged.
func (ks *killSessions) publish(name, secret string, home int) {
	k := 0
	for attempt := 0; ; attempt++ {
		select {
		case <-ks.stop:
			return
		default:
		}
		node := (home + attempt) % 3
		if node == ks.killed && attempt > 0 {
			continue
		}
		cl := dialDevice(ks.addrs()[node], name, secret)
		if cl == nil {
			select {
			case <-ks.stop:
				return
			case <-time.After(100 * time.Millisecond): // not a hot loop while a node is away
			}
			continue
		}
		for ; cl.IsConnectionOpen(); k++ {
			select {
			case <-ks.stop:
				cl.Disconnect(0)
				return
			default:
			}
			i := k % len(ks.subs)
			payload := fmt.Sprintf("%s-%d", name, k)
			tok := cl.Publish(ks.subs[i].topic, 1, false, payload)
			if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
				ks.mu.Lock()
				ks.acked[i][payload] = true
				ks.mu.Unlock()
				ks.total.Add(1)
			}
		}
		cl.Disconnect(0)
	}
}

func (ks *killSessions) waitAcked(t *testing.T, n int64, what string) {
	t.Helper()
	daemontest.WaitFor(t, 60*time.Second, func() error {
		if got := ks.total.Load(); got < n {
			return fmt.Errorf("session workload %s: %d messages acknowledged; want %d", what, got, n)
		}
		return nil
	})
}

// nodeKilled runs once the node is dead: the publishers go on while the
// subscribers are away (no node holds their sessions), then the
// subscribers resume on the survivors.
func (ks *killSessions) nodeKilled(t *testing.T) {
	t.Helper()
	ks.waitAcked(t, ks.total.Load()+100, "while the subscribers are away")
	for i, sub := range ks.subs {
		sub.cl.Disconnect(0)
		node := (ks.killed + 1 + i) % 3
		daemontest.WaitFor(t, 30*time.Second, func() error {
			if sub.cl = dialSession(ks.addrs()[node], sub, ks.secrets[i]); sub.cl == nil {
				return fmt.Errorf("%s: no connection to node-%d", sub.name, node)
			}
			return nil
		})
	}
	ks.waitAcked(t, ks.total.Load()+100, "after the subscribers resumed")
}

// check stops the publishers and waits until each subscriber got every
// acknowledged message, reporting duplicates.
func (ks *killSessions) check(t *testing.T) {
	t.Helper()
	close(ks.stop)
	ks.wg.Wait()
	ks.mu.Lock()
	defer ks.mu.Unlock()
	missing := func(i int) []string {
		sub := ks.subs[i]
		sub.mu.Lock()
		defer sub.mu.Unlock()
		var out []string
		for p := range ks.acked[i] {
			if sub.got[p] == 0 {
				out = append(out, p)
			}
		}
		sort.Strings(out)
		return out
	}
	_ = pollFor(30*time.Second, func() bool { return len(missing(0))+len(missing(1)) == 0 })
	for i, sub := range ks.subs {
		lost := missing(i)
		sub.mu.Lock()
		dups := 0
		for _, n := range sub.got {
			dups += n - 1
		}
		sub.mu.Unlock()
		if len(lost) > 0 {
			t.Errorf("%s (persistent session, resumed on another node after its node was killed): %d of %d acknowledged messages not received: %v",
				sub.name, len(lost), len(ks.acked[i]), lost)
		}
		t.Logf("%s: %d acknowledged messages, %d not received, %d duplicates", sub.name, len(ks.acked[i]), len(lost), dups)
		sub.cl.Disconnect(0)
	}
	if t.Failed() {
		for i, n := range ks.nodes {
			t.Logf("node-%d session metrics:\n%s", i, grepLines(get(t, n.api+"/metrics"), "mote_cluster_session", "mote_cluster_relay_dropped"))
			b, _ := os.ReadFile(filepath.Join(ks.dir, fmt.Sprintf("node-%d.log", i)))
			t.Logf("node-%d log, sessions:\n%s", i, grepLines(string(b), "session"))
		}
	}
}
