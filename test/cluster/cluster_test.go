// Package cluster_test runs Mote as a cluster on loopback: three
// nats-server nodes in one NATS cluster (in-process, JetStream enabled),
// three Mote nodes on them with one shared PostgreSQL (internal/pgtest),
// and real MQTT clients (paho) spread over the nodes. See docs/cluster.md.
package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/commands"
	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/pgtest"
	"github.com/moteiot/mote/internal/policy"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/telemetry"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// startNATS starts three nats-server nodes routed into one cluster, with
// JetStream, on random loopback ports. They stop when the test ends.
func startNATS(t *testing.T) []*server.Server {
	t.Helper()
	// The cluster ports are picked free and then bound by the servers: on
	// a busy machine another process can take one in between, and that
	// server never becomes ready. Then all three start again on new ports.
	var err error
	for range 3 {
		var out []*server.Server
		if out, err = tryStartNATS(t); err == nil {
			return out
		}
		t.Logf("starting three NATS servers again: %v", err)
	}
	t.Fatal(err)
	return nil
}

func tryStartNATS(t *testing.T) ([]*server.Server, error) {
	t.Helper()
	// A JetStream cluster is ready only once its servers see each other:
	// every server is given every route before any starts.
	ports := freePorts(t, 3)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	var out []*server.Server
	stop := func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, s := range out {
				s.Shutdown()
				s.WaitForShutdown()
			}
		}()
		select { // a server stuck starting must not hang the test binary
		case <-done:
		case <-time.After(20 * time.Second):
			t.Logf("NATS servers not shut down within 20 s; left behind")
		}
	}
	for i := range 3 {
		name := fmt.Sprintf("nats-%d", i)
		opts := &server.Options{
			ServerName: name, Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
			JetStream: true, StoreDir: filepath.Join(t.TempDir(), name),
			Cluster: server.ClusterOpts{Name: "mote-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s, err := server.NewServer(opts)
		if err != nil {
			stop()
			return nil, fmt.Errorf("nats server %s: %w", name, err)
		}
		go s.Start()
		out = append(out, s)
	}
	for _, s := range out {
		if !s.ReadyForConnections(20 * time.Second) {
			stop()
			return nil, fmt.Errorf("nats server %s not ready", s.Name())
		}
	}
	t.Cleanup(stop)
	daemontest.WaitFor(t, 20*time.Second, func() error {
		for _, s := range out {
			if s.NumRoutes() < 2 {
				return fmt.Errorf("%s has %d routes; want a full mesh", s.Name(), s.NumRoutes())
			}
		}
		return nil
	})
	return out, nil
}

// freePorts returns n ports of 127.0.0.1 that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return out
}

// sharedKeys are the files of a data directory that every node of a
// cluster must share: the secret hash key, the seal key, the CA and the
// signing keys (docs/cluster.md).
var sharedKeys = []func(string) string{datadir.HashKey, datadir.SealKey, datadir.PKI, datadir.FilesKey, datadir.ArtifactURLKey}

// copyKeys copies the shared keys of the data directory from into to.
func copyKeys(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
	// Only the keys: what else the first node wrote (its journal) is
	// its own.
	keep := map[string]bool{}
	for _, f := range sharedKeys {
		keep[filepath.Base(f(to))] = true
	}
	entries, err := os.ReadDir(to)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			if err := os.RemoveAll(filepath.Join(to, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
}

type testCluster struct {
	nats  []*server.Server
	nodes []*daemontest.Server
}

// startCluster starts three NATS servers and three Mote nodes on one
// PostgreSQL database; node i connects to NATS server i first. opts
// change every node's configuration.
func startCluster(t *testing.T, opts ...daemontest.Option) *testCluster {
	t.Helper()
	url := pgtest.DB(t)
	c := &testCluster{nats: startNATS(t)}
	for i := range 3 {
		urls := make([]string, 0, 3)
		for j := range 3 {
			urls = append(urls, c.nats[(i+j)%3].ClientURL())
		}
		dir := t.TempDir()
		if i > 0 {
			copyKeys(t, c.nodes[0].Dir, dir)
		}
		node := daemontest.Start(t, append([]daemontest.Option{daemontest.WithStore(url), func(cfg *config.Config) {
			cfg.DataDir = dir
			cfg.Cluster = strings.Join(urls, ",")
			cfg.NodeID = fmt.Sprintf("node-%d", i)
		}}, opts...)...)
		c.nodes = append(c.nodes, node)
	}
	return c
}

// observer is a policy that lets a thing subscribe to every thing's
// topics.
func (c *testCluster) observerPolicy(t *testing.T) {
	t.Helper()
	_, err := c.nodes[0].Registry().CreatePolicy(context.Background(), "observer", "", policy.Document{Statements: []policy.Statement{
		{Effect: policy.Allow, Actions: []policy.Action{policy.Subscribe, policy.Receive}, Topics: []string{"things/#"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

// propsClient is a paho MQTT 5 client that keeps the user properties of
// what it receives.
type propsClient struct {
	*paho.Client
	mu   sync.Mutex
	got  []*paho.Publish
	recv chan struct{}
}

func dialProps(t *testing.T, addr, thing, secret string) *propsClient {
	t.Helper()
	conn, err := (&netDialer{}).dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	pc := &propsClient{recv: make(chan struct{}, 1)}
	pc.Client = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			pc.mu.Lock()
			pc.got = append(pc.got, pr.Packet)
			pc.mu.Unlock()
			select {
			case pc.recv <- struct{}{}:
			default:
			}
			return true, nil
		}},
		OnClientError: func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pc.Connect(ctx, &paho.Connect{ClientID: thing, KeepAlive: 30, CleanStart: true,
		Username: thing, UsernameFlag: true, Password: []byte(secret), PasswordFlag: true}); err != nil {
		t.Fatalf("connect %s: %v", thing, err)
	}
	t.Cleanup(func() { _ = pc.Disconnect(&paho.Disconnect{}) })
	return pc
}

func (pc *propsClient) received() []*paho.Publish {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return append([]*paho.Publish(nil), pc.got...)
}

// TestCluster is the cluster on one machine: routing between nodes with
// QoS, retain flag and user properties kept and no loop; retained
// messages shared; one shadow version sequence; a command reaching a
// device on another node; a client id moving node taking its session
// over. One cluster serves every step (they use different things).
func TestCluster(t *testing.T) {
	c := startCluster(t)
	c.observerPolicy(t)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	const wait = 30 * time.Second // a deadline for a loaded CI machine; a normal run takes milliseconds

	t.Run("routing", func(t *testing.T) {
		// Publishers on nodes A and B; subscribers on C (another node)
		// and on A (the publisher's own node: exactly once, no loop).
		const perDevice = 200
		pubA := a.V5(t, "pub-a", a.Device(t, "pub-a"))
		pubB := b.V5(t, "pub-b", a.Device(t, "pub-b"))
		subC := cc.V5(t, "sub-c", a.Device(t, "sub-c", "observer"))
		subA := a.V5(t, "sub-a", a.Device(t, "sub-a", "observer"))
		for _, s := range []*daemontest.V5{subC, subA} {
			if rc := s.Sub(t, "things/+/telemetry"); rc != 1 {
				t.Fatalf("subscribe = %#x; want 1", rc)
			}
		}
		acked := 0
		for k := range perDevice {
			for _, p := range []struct {
				c     *daemontest.V5
				thing string
			}{{pubA, "pub-a"}, {pubB, "pub-b"}} {
				if rc := p.c.Pub(t, "things/"+p.thing+"/telemetry", 1, false, fmt.Sprintf(`{"n":%d}`, k)); rc != 0 {
					t.Fatalf("PUBACK %#x", rc)
				}
				acked++
			}
		}
		for name, s := range map[string]*daemontest.V5{"subscriber on node C": subC, "subscriber on node A": subA} {
			daemontest.WaitFor(t, wait, func() error {
				if n := s.Inbox.Len(); n < acked {
					return fmt.Errorf("%s: %d of %d acknowledged messages", name, n, acked)
				}
				return nil
			})
			seen := map[string]int{}
			for _, m := range s.Inbox.All() {
				if m.QoS != 1 {
					t.Errorf("%s: %s QoS %d; want 1", name, m.Topic, m.QoS)
				}
				seen[m.Topic+" "+m.Payload]++
			}
			if len(seen) != acked {
				t.Errorf("%s: %d distinct messages; want %d", name, len(seen), acked)
			}
			for k, n := range seen {
				if n != 1 {
					t.Errorf("%s: %s received %d times; want once (a loop?)", name, k, n)
				}
			}
		}
	})

	t.Run("telemetry stored once", func(t *testing.T) {
		// The routing step's acknowledged QoS 1 telemetry, accepted on
		// nodes A and B, is stored exactly once in the shared database
		// (each node's own journal sequence must not make the other's
		// messages look stored already).
		for _, thing := range []string{"pub-a", "pub-b"} {
			daemontest.WaitFor(t, wait, func() error {
				seen := storedN(t, cc, thing)
				if len(seen) != 200 {
					return fmt.Errorf("%s: %d of 200 acknowledged messages stored", thing, len(seen))
				}
				for v, n := range seen {
					if n != 1 {
						return fmt.Errorf("%s: n=%v stored %d times", thing, v, n)
					}
				}
				return nil
			})
		}
	})

	t.Run("properties", func(t *testing.T) {
		pub := dialProps(t, a.MQTT, "props-pub", a.Device(t, "props-pub"))
		sub := dialProps(t, b.MQTT, "props-sub", a.Device(t, "props-sub", "observer"))
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "things/props-pub/#", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: "things/props-pub/event", QoS: 1, Payload: []byte("x"),
			Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "trace", Value: "abc"}, {Key: "unit", Value: "C"}}}}); err != nil {
			t.Fatal(err)
		}
		daemontest.WaitFor(t, wait, func() error {
			if len(sub.received()) == 0 {
				return fmt.Errorf("nothing received on node B")
			}
			return nil
		})
		got := sub.received()[0]
		if got.QoS != 1 || got.Properties == nil || got.Properties.User.Get("trace") != "abc" || got.Properties.User.Get("unit") != "C" {
			t.Fatalf("received QoS %d properties %+v; want QoS 1 and trace=abc, unit=C", got.QoS, got.Properties)
		}
	})

	t.Run("retained", func(t *testing.T) {
		pub := a.V5(t, "ret-pub", a.Device(t, "ret-pub"))
		watch := b.V5(t, "ret-watch", a.Device(t, "ret-watch", "observer"))
		watch.Sub(t, "things/ret-pub/state")
		pub.Pub(t, "things/ret-pub/state", 1, true, "on")
		// Once node B delivered it, node B holds it as retained.
		watch.Inbox.Wait(t, "things/ret-pub/state", wait)
		late := b.V5(t, "ret-late", a.Device(t, "ret-late", "observer"))
		late.Sub(t, "things/ret-pub/state")
		m := late.Inbox.Wait(t, "things/ret-pub/state", wait)
		if m.Payload != "on" || !m.Retain {
			t.Fatalf("new subscriber on node B got %q retain=%v; want the retained \"on\"", m.Payload, m.Retain)
		}
		// And node C, which had no subscriber, has it from the shared
		// store once it (re)loads... or from the relay: check it holds it.
		lateC := cc.V5(t, "ret-late-c", a.Device(t, "ret-late-c", "observer"))
		lateC.Sub(t, "things/ret-pub/state")
		if m := lateC.Inbox.Wait(t, "things/ret-pub/state", wait); m.Payload != "on" {
			t.Fatalf("new subscriber on node C got %q; want \"on\"", m.Payload)
		}
	})

	t.Run("shadow", func(t *testing.T) {
		ctx := context.Background()
		a.Thing(t, "lamp")
		// Updates on the three nodes in turn, each after the previous
		// one's answer: one version sequence 1, 2, 3, 4, 5, 6.
		for i := range 6 {
			n := c.nodes[i%3]
			doc, err := n.Shadows().Update(ctx, "lamp", "", fmt.Appendf(nil, `{"state":{"desired":{"level":%d}}}`, i))
			if err != nil {
				t.Fatalf("update on node %d: %v", i%3, err)
			}
			var v struct {
				Version int `json:"version"`
			}
			if err := json.Unmarshal(doc, &v); err != nil {
				t.Fatal(err)
			}
			if v.Version != i+1 {
				t.Fatalf("update %d on node %d: version %d; want %d (the versions forked)", i, i%3, v.Version, i+1)
			}
			// The next node must have heard of this change before it
			// updates (the relay is asynchronous: docs/cluster.md).
			next := c.nodes[(i+1)%3]
			daemontest.WaitFor(t, wait, func() error {
				got, err := next.Shadows().Get(ctx, "lamp", "")
				if err != nil {
					return err
				}
				if err := json.Unmarshal(got, &v); err != nil {
					return err
				}
				if v.Version != i+1 {
					return fmt.Errorf("node %d reads version %d; want %d", (i+1)%3, v.Version, i+1)
				}
				return nil
			})
		}
	})

	t.Run("delta to a device on another node", func(t *testing.T) {
		dev := cc.V5(t, "heater", a.Device(t, "heater"))
		dev.Sub(t, "$aws/things/heater/shadow/update/delta")
		if _, err := a.Shadows().Update(context.Background(), "heater", "", []byte(`{"state":{"desired":{"on":true}}}`)); err != nil {
			t.Fatal(err)
		}
		m := dev.Inbox.Wait(t, "$aws/things/heater/shadow/update/delta", wait)
		if !strings.Contains(m.Payload, `"on":true`) {
			t.Fatalf("delta %s", m.Payload)
		}
	})

	t.Run("command", func(t *testing.T) {
		dev := cc.V5(t, "pump", a.Device(t, "pump"))
		dev.Sub(t, commands.Topic("pump", "+"))
		cmd, err := a.Commands().Create(context.Background(), "pump", commands.Request{Name: "start"})
		if err != nil {
			t.Fatal(err)
		}
		m := dev.Inbox.Wait(t, commands.Topic("pump", cmd.ID), wait)
		if !strings.Contains(m.Payload, `"name":"start"`) {
			t.Fatalf("command %s", m.Payload)
		}
		// The device on node C acknowledged it: the shared store says
		// delivered, on every node.
		daemontest.WaitFor(t, wait, func() error {
			got, err := b.Commands().Get(context.Background(), "pump", cmd.ID)
			if err != nil {
				return err
			}
			if got.Status != "delivered" {
				return fmt.Errorf("status %q; want delivered", got.Status)
			}
			return nil
		})
	})

	t.Run("artifact uploaded on one node, downloaded on another", func(t *testing.T) {
		// The blob store of a cluster is JetStream's object store: an
		// artifact's content uploaded through node A is served by node C,
		// by the API and by a signed URL that node B made.
		content := bytes.Repeat([]byte("firmware-"), 50_000) // 450 KB: several chunks
		if _, err := apiclient.New(a.API, a.Token).UploadArtifact(context.Background(),
			apiclient.ArtifactUpload{Name: "fw", Version: "1.0.0"}, bytes.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		get := func(url, token string) []byte {
			t.Helper()
			req, _ := http.NewRequest("GET", url, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
			}
			return body
		}
		if got := get(cc.API+"/api/v1/artifacts/fw/1.0.0/content", cc.Token); !bytes.Equal(got, content) {
			t.Fatalf("node C served %d bytes; want the %d uploaded on node A", len(got), len(content))
		}
		u, err := apiclient.New(b.API, b.Token).ArtifactURL(context.Background(), "fw", "1.0.0")
		if err != nil {
			t.Fatal(err)
		}
		signed := u.URL
		if i := strings.Index(signed, "/api/v1/"); i >= 0 {
			signed = cc.API + signed[i:] // the same URL, asked of node C
		}
		if got := get(signed, ""); !bytes.Equal(got, content) {
			t.Fatalf("signed URL on node C served %d bytes; want %d", len(got), len(content))
		}
	})

	t.Run("thing disabled on another node", func(t *testing.T) {
		// Disabled through node A's registry, the thing's connection on
		// node C is closed.
		dev := cc.V5(t, "rogue", a.Device(t, "rogue"))
		if _, err := a.Registry().UpdateThing(context.Background(), "rogue", store.ThingPatch{Enabled: ptr(false)}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-dev.Disconnected:
		case <-time.After(wait):
			t.Fatal("the disabled thing's connection on node C is still open")
		}
	})

	t.Run("takeover", func(t *testing.T) {
		secret := a.Device(t, "mover")
		first := a.V5(t, "mover", secret)
		second := b.V5(t, "mover", secret)
		select {
		case d := <-first.Disconnected:
			if d.ReasonCode != 0x8E {
				t.Fatalf("first connection disconnected with %#x; want 0x8E (session taken over)", d.ReasonCode)
			}
		case <-time.After(wait):
			t.Fatal("the connection on node A was not taken over by the one on node B")
		}
		// The new connection works.
		if rc := second.Pub(t, "things/mover/telemetry", 1, false, "{}"); rc != 0 {
			t.Fatalf("PUBACK %#x after takeover", rc)
		}
		// Presence is cluster-wide: the registry, read on node C, shows
		// the thing connected on node B, where it moved — node A's
		// disconnect of the old connection did not mark it offline.
		daemontest.WaitFor(t, wait, func() error {
			th, err := cc.Registry().GetThing(context.Background(), "mover")
			if err != nil {
				return err
			}
			if !th.Connected || th.Node != "node-1" {
				return fmt.Errorf("mover: connected %v on node %q; want connected on node-1", th.Connected, th.Node)
			}
			return nil
		})
	})
}

// storedN counts the stored telemetry values of key "n" of a thing, read
// through node's telemetry store.
func storedN(t *testing.T, node *daemontest.Server, thing string) map[telemetry.Value]int {
	t.Helper()
	seen := map[telemetry.Value]int{}
	q := telemetry.RangeQuery{Things: []string{thing}, Keys: []string{"n"}, To: time.Now().Add(time.Hour).UnixMilli(), Limit: telemetry.MaxLimit}
	for {
		pts, next, err := node.Telemetry().Range(context.Background(), q)
		if err != nil {
			t.Fatalf("telemetry of %s: %v", thing, err)
		}
		for _, p := range pts {
			seen[p.Value]++
		}
		if next == "" {
			return seen
		}
		q.Cursor = next
	}
}

func ptr[T any](v T) *T { return &v }
