package e2e

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	_ "modernc.org/sqlite"
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
	// 100 ms (docs/architecture.md, "Persistent sessions"): wait until the
	// database holds all of them, read from this process.
	eventually(t, 10*time.Second, func() bool { return storedSessionMessages(t, dir, "q-inbox") == n }, func() string {
		return fmt.Sprintf("the store holds %d of the %d messages queued for q-inbox", storedSessionMessages(t, dir, "q-inbox"), n)
	})
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

// storedSessionMessages counts the messages the server's database (in
// dataDir, opened read-only from the test) holds for a persistent session.
func storedSessionMessages(t *testing.T, dataDir, clientID string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "mote.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM mqtt_session_messages WHERE client_id = ?`, clientID).Scan(&n); err != nil {
		t.Logf("count stored session messages: %v", err)
		return -1
	}
	return n
}
