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
	received := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	subscriber := func(addr string) paho.Client {
		t.Helper()
		return connectMQTT(t, addr, "q-inbox", "q", secret, func(o *paho.ClientOptions) {
			o.SetCleanSession(false).SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
				mu.Lock()
				got[string(m.Payload())] = true
				mu.Unlock()
			})
		})
	}
	sub := subscriber(s.mqtt)
	if tok := sub.Subscribe("things/q/inbox", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	sub.Disconnect(100)

	pub := connectMQTT(t, s.mqtt, "q", "q", secret, nil)
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
	eventually(t, 10*time.Second, func() bool { return received() == n }, func() string {
		return fmt.Sprintf("after the restart the persistent session received %d of the %d queued messages; server log:\n%s", received(), n, s2.stderr)
	})
	// The subscription survived as well.
	pub = connectMQTT(t, s2.mqtt, "q", "q", secret, nil)
	defer pub.Disconnect(100)
	pub.Publish("things/q/inbox", 1, false, "after").WaitTimeout(5 * time.Second)
	eventually(t, 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got["after"]
	}, func() string { return "a message published after the restart did not reach the restored subscription" })
}
