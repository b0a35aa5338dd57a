package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestCrashKeepsQueuedMessages: QoS 1 messages queued for a device's
// persistent session while it is offline are still delivered to it after
// the server was killed with SIGKILL and restarted, and its subscription
// is still there.
func TestCrashKeepsQueuedMessages(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, true, "--device-rate-limit", "0")
	c := cli{server: s.api, token: s.token}
	u := &user{dir: dir, srv: s, cli: c, secrets: map[string]string{}}
	c.ok(t, "thing", "create", "q")
	secret := u.newSecret(t, "q")

	var mu sync.Mutex
	got := map[string]bool{}
	subscriber := func(addr string) paho.Client {
		t.Helper()
		opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("q-inbox").
			SetUsername("q").SetPassword(secret).SetCleanSession(false).
			SetAutoReconnect(false).SetConnectRetry(false).
			SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
				mu.Lock()
				got[string(m.Payload())] = true
				mu.Unlock()
			})
		cl := paho.NewClient(opts)
		if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("subscriber connect: %v", tok.Error())
		}
		return cl
	}
	sub := subscriber(s.mqtt)
	if tok := sub.Subscribe("things/q/inbox", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	sub.Disconnect(100)

	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + s.mqtt).SetClientID("q").
		SetUsername("q").SetPassword(secret).SetAutoReconnect(false))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	const n = 200
	for i := range n {
		tok := pub.Publish("things/q/inbox", 1, false, fmt.Sprint(i))
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	pub.Disconnect(100)
	// Queued messages are written to the store in the background within
	// 100 ms (docs/architecture.md, "Persistent sessions").
	time.Sleep(500 * time.Millisecond)
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-s.exited

	s2 := startServer(t, dir, false, "--device-rate-limit", "0")
	defer s2.stop(t, nil)
	sub = subscriber(s2.mqtt)
	defer sub.Disconnect(100)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		have := len(got)
		mu.Unlock()
		if have == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart the persistent session received %d of the %d queued messages; server log:\n%s", have, n, s2.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The subscription survived as well.
	pub = paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + s2.mqtt).SetClientID("q").
		SetUsername("q").SetPassword(secret).SetAutoReconnect(false))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	pub.Publish("things/q/inbox", 1, false, "after").WaitTimeout(5 * time.Second)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		ok := got["after"]
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a message published after the restart did not reach the restored subscription")
		}
	}
}
