package cluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/methods"
	"github.com/moteiot/mote/internal/registry"
)

// callMethod posts a direct method call to node n's REST API and returns
// the status and the body.
func callMethod(t *testing.T, n *daemontest.Server, thing, method, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", n.API+"/api/v1/things/"+thing+"/methods/"+method, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+n.Token)
	req.Header.Set("Content-Type", "application/json")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("POST methods/%s on %s: %v", method, n.Config.NodeID, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// waitNode waits until the store shows thing connected on node.
func waitNode(t *testing.T, n *daemontest.Server, thing, node string) {
	t.Helper()
	daemontest.WaitFor(t, 10*time.Second, func() error {
		th, err := n.Store().Things().Get(context.Background(), thing)
		if err != nil {
			return err
		}
		if !th.Connected || th.Node != node {
			return fmt.Errorf("%s: connected %v on %q; want on %s", thing, th.Connected, th.Node, node)
		}
		return nil
	})
}

// TestClusterDeviceWork is the device-directed work that crosses nodes:
// direct methods called on one node for a device on another (answer,
// offline, timeout, and the serving node dying mid-call), concurrent
// shadow updates over the three nodes that never fork, and the console's
// live events of one node showing another node's devices. One cluster
// serves every step; the node loss comes last.
func TestClusterDeviceWork(t *testing.T) {
	c := startCluster(t)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	const wait = 10 * time.Second

	t.Run("method on another node", func(t *testing.T) {
		dev := cc.V5(t, "motor", a.Device(t, "motor"))
		dev.Sub(t, "$mote/things/motor/methods/+/+")
		waitNode(t, a, "motor", "node-2")
		done := make(chan struct{})
		go func() {
			defer close(done)
			m := dev.Inbox.Wait(t, "", wait)
			rest := strings.TrimPrefix(m.Topic, "$mote/things/motor/methods/")
			method, id, _ := strings.Cut(rest, "/")
			dev.Pub(t, methods.ResponseTopic("motor", 200, id), 1, false, fmt.Sprintf(`{"method":%q,"got":%s}`, method, m.Payload))
		}()
		code, body := callMethod(t, a, "motor", "spin", `{"payload":{"rpm":1200},"timeoutSeconds":5}`)
		<-done
		if code != 200 || !strings.Contains(body, `"status":200`) || !strings.Contains(body, `"got":{"rpm":1200}`) {
			t.Fatalf("call on node A for a device on node C = %d %s; want 200 with the device's answer", code, body)
		}
	})

	t.Run("method offline and timeout", func(t *testing.T) {
		a.Thing(t, "idle")
		if code, body := callMethod(t, b, "idle", "ping", `{}`); code != 404 {
			t.Errorf("call for a thing connected nowhere = %d %s; want 404 as on one node", code, body)
		}
		mute := b.V5(t, "mute", a.Device(t, "mute"))
		mute.Sub(t, "$mote/things/mute/methods/+/+")
		waitNode(t, a, "mute", "node-1")
		code, body := callMethod(t, a, "mute", "ping", `{"timeoutSeconds":1}`)
		if code != 504 {
			t.Errorf("call for a silent device on node B = %d %s; want 504 as on one node", code, body)
		}
		mute.Inbox.Wait(t, "", wait) // the request did reach it on node B
	})

	t.Run("shadow updates over three nodes never fork", func(t *testing.T) {
		a.Thing(t, "valve")
		const n = 30
		var (
			mu       sync.Mutex
			versions []int
			wg       sync.WaitGroup
		)
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				doc, err := c.nodes[i%3].Shadows().Update(context.Background(), "valve", "", fmt.Appendf(nil, `{"state":{"reported":{"f%d":%d}}}`, i, i))
				if err != nil {
					errs <- fmt.Errorf("update %d on node %d: %w", i, i%3, err)
					return
				}
				var v struct {
					Version int `json:"version"`
				}
				if err := json.Unmarshal(doc, &v); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				versions = append(versions, v.Version)
				mu.Unlock()
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		slices.Sort(versions)
		for i, v := range versions {
			if v != i+1 {
				t.Fatalf("accepted versions %v; want 1..%d, each once", versions, n)
			}
		}
		st, err := cc.Store().Shadows().Get(context.Background(), "valve", "")
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			State struct {
				Reported map[string]int `json:"reported"`
			} `json:"state"`
		}
		if err := json.Unmarshal(st.Document, &doc); err != nil {
			t.Fatal(err)
		}
		if st.Version != n || len(doc.State.Reported) != n {
			t.Errorf("stored version %d with %d fields; want %d and %d", st.Version, len(doc.State.Reported), n, n)
		}
		t.Logf("store conflicts retried: %d, %d, %d", a.Shadows().Conflicts(), b.Shadows().Conflicts(), cc.Shadows().Conflicts())
	})

	t.Run("live events of other nodes", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", a.API+"/api/v1/events?presence=1", nil)
		req.Header.Set("Authorization", "Bearer "+a.Token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("GET /events = %d", res.StatusCode)
		}
		lines := make(chan string, 64)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(res.Body)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// Wait for the stream to be open (its retry line) before the
		// device connects, so the event is a live one, not the recent list.
		for l := range lines {
			if strings.HasPrefix(l, "retry:") {
				break
			}
		}
		cc.V5(t, "faraway", a.Device(t, "faraway"))
		for l := range lines {
			if strings.HasPrefix(l, "data:") && strings.Contains(l, "faraway") && strings.Contains(l, "presence") {
				return
			}
		}
		t.Fatal("node A's event stream never showed the presence of a device on node C")
	})

	t.Run("credential rotated on another node", func(t *testing.T) {
		// Rotated through node A with no window, the old credential's
		// connection on node C is closed: the rotation was announced.
		a.Thing(t, "rotor")
		id, secret := a.Secret(t, "rotor")
		dev := cc.V5(t, "rotor", secret)
		waitNode(t, a, "rotor", "node-2")
		now := time.Duration(0)
		if _, _, err := a.Registry().RotateCredential(context.Background(), "rotor", id, registry.Rotation{Window: &now}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-dev.Disconnected:
		case <-time.After(wait):
			t.Fatal("the rotated credential's connection on node C is still open")
		}
	})

	t.Run("serving node dies mid-call", func(t *testing.T) {
		stuck := b.V5(t, "stuck", a.Device(t, "stuck"))
		stuck.Sub(t, "$mote/things/stuck/methods/+/+")
		waitNode(t, a, "stuck", "node-1")
		go func() {
			stuck.Inbox.Wait(t, "", wait)
			_ = b.Daemon.Close() // node B dies with the call in hand
		}()
		code, body := callMethod(t, a, "stuck", "ping", `{"timeoutSeconds":2}`)
		if code != 504 {
			t.Fatalf("call whose serving node died = %d %s; want 504 (timeout), not a hang", code, body)
		}
	})
}
