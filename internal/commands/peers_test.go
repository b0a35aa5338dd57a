package commands_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/commands"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
)

// node is a Sender standing for a node with one device connected and
// subscribed that never acknowledges: it records the commands it
// delivered, each once (the broker does not send again what a connection
// has unacknowledged) — or, with every, each send asked of it.
type node struct {
	mu        sync.Mutex
	every     bool
	delivered []string
}

func (n *node) Deliver(thing, topic string, payload []byte, expires time.Time) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.every || !slices.Contains(n.delivered, topic) {
		n.delivered = append(n.delivered, topic)
	}
	return 1, nil
}

func (n *node) Publish(topic string, payload []byte, retain bool, qos byte) error { return nil }

func (n *node) got() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.delivered...)
}

// peers hands each queued command to the other nodes' services, as
// *cluster.Node does over NATS.
type peers struct{ others []*commands.Service }

func (p *peers) CommandQueued(thing string) {
	for _, s := range p.others {
		s.QueuedElsewhere(thing)
	}
}

// TestPeersDeliverCommandsQueuedElsewhere: two services on one store
// stand for two cluster nodes, with no relay between them; the device is
// on node B. A command queued on node A reaches it only because A tells
// its peers (Options.Peers), which is what a node whose relay consumer
// stalled still gets. Without peers (node C's service) nothing is
// delivered: the test can fail.
func TestPeersDeliverCommandsQueuedElsewhere(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "mote.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	for _, thing := range []string{"lamp", "fan"} {
		if _, err := st.Things().Create(ctx, store.Thing{Name: thing, Enabled: true}); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.DiscardHandler)
	b := commands.New(commands.Options{Store: st.Commands(), Logger: log, SweepInterval: time.Hour})
	devB := &node{}
	b.Start(devB)
	defer b.Close()
	a := commands.New(commands.Options{Store: st.Commands(), Logger: log, SweepInterval: time.Hour, Peers: &peers{others: []*commands.Service{b}}})
	a.Start(&node{})
	defer a.Close()
	c := commands.New(commands.Options{Store: st.Commands(), Logger: log, SweepInterval: time.Hour})
	c.Start(&node{})
	defer c.Close()

	cmd, err := a.Create(ctx, "lamp", commands.Request{Name: "reboot"})
	if err != nil {
		t.Fatal(err)
	}
	delivered := func(n int) {
		t.Helper()
		daemontest.WaitFor(t, 10*time.Second, func() error {
			if got := devB.got(); len(got) < n {
				return fmt.Errorf("node B delivered %v; want %d commands", got, n)
			}
			return nil
		})
	}
	delivered(1)
	if got := devB.got(); len(got) != 1 || got[0] != commands.Topic("lamp", cmd.ID) {
		t.Fatalf("node B delivered %v; want %s once", got, commands.Topic("lamp", cmd.ID))
	}

	// Queued on C, which has no peers: B never hears of it.
	if _, err := c.Create(ctx, "fan", commands.Request{Name: "reboot"}); err != nil {
		t.Fatal(err)
	}
	// A's second command is a marker: once B delivered it, B would have
	// had every chance to deliver C's too.
	marker, err := a.Create(ctx, "lamp", commands.Request{Name: "locate"})
	if err != nil {
		t.Fatal(err)
	}
	delivered(2)
	got := devB.got()
	if len(got) != 2 || got[1] != commands.Topic("lamp", marker.ID) {
		t.Fatalf("node B delivered %v; want the two commands A announced, not C's", got)
	}
}

// TestRemoteResultApplied: node B accepted a device's result (its PUBACK
// sent) and was killed before applying it; node A, which got the result
// relayed, applies it: the command ends succeeded. When B did apply it,
// A's copy is dropped quietly (not counted as ignored).
func TestRemoteResultApplied(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "mote.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.Things().Create(ctx, store.Thing{Name: "lamp", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	a := commands.New(commands.Options{Store: st.Commands(), Logger: log, SweepInterval: time.Hour, Metrics: reg})
	a.Start(&node{})
	defer a.Close()
	b := commands.New(commands.Options{Store: st.Commands(), Logger: log, SweepInterval: time.Hour})
	b.Start(&node{})
	defer b.Close()

	result := func(id string) core.Message {
		return core.Message{Topic: commands.ResultTopic("lamp", id), Thing: "lamp", Payload: []byte(`{"status":"succeeded","output":{"ok":1}}`)}
	}
	waitEnded := func(id string) {
		t.Helper()
		daemontest.WaitFor(t, 10*time.Second, func() error {
			c, err := a.Get(ctx, "lamp", id)
			if err != nil {
				return err
			}
			if c.Status != store.CommandSucceeded || c.Result == nil || string(c.Result.Output) != `{"ok":1}` {
				return fmt.Errorf("command %s is %s with %+v; want succeeded with the device's output", id, c.Status, c.Result)
			}
			return nil
		})
	}

	// B died: only A's relayed copy exists.
	lost, err := b.Create(ctx, "lamp", commands.Request{Name: "reboot"})
	if err != nil {
		t.Fatal(err)
	}
	a.HandleRemoteResult(result(lost.ID))
	waitEnded(lost.ID)

	// B applied it; A's copy comes second.
	both, err := b.Create(ctx, "lamp", commands.Request{Name: "locate"})
	if err != nil {
		t.Fatal(err)
	}
	b.HandleMessage(result(both.ID))
	waitEnded(both.ID)
	a.HandleRemoteResult(result(both.ID))
	// A garbage relayed result and a third command's result mark the
	// point where A has applied everything before them.
	a.HandleRemoteResult(core.Message{Topic: commands.ResultTopic("lamp", "x"), Thing: "other", Payload: []byte(`{}`)})
	marker, err := b.Create(ctx, "lamp", commands.Request{Name: "locate"})
	if err != nil {
		t.Fatal(err)
	}
	a.HandleRemoteResult(result(marker.ID))
	waitEnded(marker.ID)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "mote_command_reports_ignored_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				t.Errorf("relayed results counted as ignored (%v): %v; want 0", m.GetLabel(), v)
			}
		}
	}
}

// TestNoSecondSendOnOneConnection: a command sent and not acknowledged
// yet is not sent again by the next pass (another command created): the
// broker forgets a delivery at its PUBACK a moment before the service
// marks it acknowledged, and a pass in between sent it twice on one
// connection. A new subscription (a reconnect) gets both again at once.
func TestNoSecondSendOnOneConnection(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "mote.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.Things().Create(ctx, store.Thing{Name: "lamp", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	s := commands.New(commands.Options{Store: st.Commands(), Logger: slog.New(slog.DiscardHandler), SweepInterval: time.Hour})
	dev := &node{every: true} // as a connection would get them if the broker did not drop a second send
	s.Start(dev)
	defer s.Close()
	count := func(n int) []string {
		t.Helper()
		daemontest.WaitFor(t, 10*time.Second, func() error {
			if got := dev.got(); len(got) < n {
				return fmt.Errorf("delivered %v; want %d sends", got, n)
			}
			return nil
		})
		return dev.got()
	}
	first, err := s.Create(ctx, "lamp", commands.Request{Name: "reboot"})
	if err != nil {
		t.Fatal(err)
	}
	count(1)
	second, err := s.Create(ctx, "lamp", commands.Request{Name: "locate"})
	if err != nil {
		t.Fatal(err)
	}
	got := count(2)
	want := []string{commands.Topic("lamp", first.ID), commands.Topic("lamp", second.ID)}
	if !slices.Equal(got, want) {
		t.Fatalf("sends %v; want %v (the first command once)", got, want)
	}
	s.Subscribed("lamp", []string{"$mote/things/lamp/commands/+"})
	got = count(4)
	if !slices.Equal(got[2:], want) {
		t.Errorf("sends after a new subscription %v; want %v again", got[2:], want)
	}
}
