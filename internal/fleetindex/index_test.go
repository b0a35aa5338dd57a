package fleetindex

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/fleetquery"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/shadow"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

// recorder is a Publisher that keeps what it was given.
type recorder struct {
	mu   sync.Mutex
	msgs []string // topic + " " + thing
}

func (r *recorder) Publish(topic string, payload []byte, _ bool, _ byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	thing := ""
	if i := strings.Index(string(payload), `"thing":"`); i >= 0 {
		rest := string(payload)[i+9:]
		thing = rest[:strings.IndexByte(rest, '"')]
	}
	r.msgs = append(r.msgs, topic+" "+thing)
	return nil
}

func (r *recorder) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.msgs, s)
}

type fixture struct {
	st      store.Store
	reg     *registry.Registry
	shadows *shadow.Service
	bus     *bus.Local
	idx     *Index
	pub     *recorder
	metrics *prometheus.Registry
}

func setup(t *testing.T, o Options) *fixture {
	t.Helper()
	st, err := sqlite.Open(sqlitetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, bus: &bus.Local{}, pub: &recorder{}, metrics: prometheus.NewRegistry()}
	f.reg = registry.New(registry.Options{Store: st})
	o.Store, o.Bus, o.Publisher, o.Metrics = st, f.bus, f.pub, f.metrics
	f.idx = New(o)
	f.reg.Listen(f.idx.OnRegistry)
	f.shadows = shadow.New(shadow.Options{Store: st.Shadows(), OnChange: f.idx.OnShadowChange})
	t.Cleanup(func() { f.shadows.Close() })
	return f
}

func (f *fixture) start(t *testing.T) {
	t.Helper()
	f.idx.Start()
	t.Cleanup(func() { f.idx.Close() })
	waitFor(t, "index ready", f.idx.Ready)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) match(t *testing.T, q string) []string {
	t.Helper()
	names, err := f.idx.Match(t.Context(), q)
	if err != nil {
		t.Fatalf("Match(%q) = %v", q, err)
	}
	return names
}

func (f *fixture) waitMatch(t *testing.T, q string, want ...string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("Match(%q) = %q", q, want), func() bool { return slices.Equal(f.match(t, q), want) })
}

func (f *fixture) thing(t *testing.T, th store.Thing) {
	t.Helper()
	th.Enabled = true
	if _, err := f.reg.CreateThing(t.Context(), th); err != nil {
		t.Fatal(err)
	}
}

// TestLoadAndFollow: the index loads what the store holds at start, then
// follows registry changes, shadow commits, presence and telemetry.
func TestLoadAndFollow(t *testing.T) {
	f := setup(t, Options{})
	ctx := t.Context()
	f.thing(t, store.Thing{Name: "s1", Attributes: map[string]string{"site": "ams"}})
	if _, err := f.shadows.Update(ctx, "s1", "", []byte(`{"state":{"reported":{"firmware":"1.4.2"}}}`)); err != nil {
		t.Fatal(err)
	}
	f.start(t)
	f.waitMatch(t, "version(shadow.reported.firmware) < '1.5' AND attributes.site = 'ams'", "s1")

	f.thing(t, store.Thing{Name: "s2", Attributes: map[string]string{"site": "ams"}})
	f.waitMatch(t, "attributes.site = 'ams'", "s1", "s2")

	if _, err := f.reg.UpdateThing(ctx, "s2", store.ThingPatch{Attributes: map[string]string{"site": "rtm"}}); err != nil {
		t.Fatal(err)
	}
	f.waitMatch(t, "attributes.site = 'rtm'", "s2")

	if _, err := f.shadows.Update(ctx, "s2", "cfg", []byte(`{"state":{"reported":{"mode":"eco","level":3}}}`)); err != nil {
		t.Fatal(err)
	}
	f.waitMatch(t, "shadow.name.cfg.reported.level >= 3", "s2")

	f.bus.Publish(core.Message{Topic: core.PresenceConnected + "s2", Protocol: "platform",
		Payload: []byte(`{"event":"connected","clientId":"s2","thing":"s2","time":"2026-12-05T10:00:00Z"}`)})
	f.waitMatch(t, "connected = true AND lastSeen >= '2026-12-05T10:00:00Z'", "s2")

	f.bus.Publish(core.Message{Topic: "things/s1/telemetry", Payload: []byte(`{"temp": 21.5, "door": {"open": true}}`), Received: time.Now()})
	f.waitMatch(t, "telemetry.temp > 20 AND telemetry.door.open = true", "s1")

	if _, err := f.shadows.Delete(ctx, "s1", ""); err != nil {
		t.Fatal(err)
	}
	f.waitMatch(t, "EXISTS shadow.reported.firmware")

	if err := f.reg.DeleteThing(ctx, "s2"); err != nil {
		t.Fatal(err)
	}
	f.waitMatch(t, "EXISTS attributes.site", "s1")
	if n, err := f.idx.Count(ctx, "EXISTS attributes.site"); err != nil || n != 1 {
		t.Errorf("Count = %d, %v; want 1", n, err)
	}
}

// TestDynamicGroup: membership follows the thing, its shadow and its
// connection, and each change is announced once.
func TestDynamicGroup(t *testing.T) {
	f := setup(t, Options{})
	ctx := t.Context()
	f.thing(t, store.Thing{Name: "a", Attributes: map[string]string{"site": "ams"}})
	f.thing(t, store.Thing{Name: "b"})
	f.start(t)
	if _, err := f.reg.CreateGroup(ctx, store.Group{Name: "old-ams", Query: "attributes.site = 'ams' AND version(shadow.reported.fw) < '2'"}); err != nil {
		t.Fatal(err)
	}
	members := func() []string {
		m, ok, err := f.idx.Members(ctx, "old-ams")
		if err != nil || !ok {
			t.Fatalf("Members = %v, %v, %v", m, ok, err)
		}
		return m
	}
	waitFor(t, "group loaded", func() bool { return f.idx.DynamicGroups() == 1 })
	if m := members(); len(m) != 0 {
		t.Fatalf("members before any shadow = %q", m)
	}
	if _, err := f.shadows.Update(ctx, "a", "", []byte(`{"state":{"reported":{"fw":"1.9"}}}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a added", func() bool { return f.pub.has(GroupEventsPrefix + "old-ams/added a") })
	if m := members(); !slices.Equal(m, []string{"a"}) {
		t.Errorf("members = %q; want [a]", m)
	}
	// The firmware moves on: a leaves.
	if _, err := f.shadows.Update(ctx, "a", "", []byte(`{"state":{"reported":{"fw":"2.0.1"}}}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a removed", func() bool { return f.pub.has(GroupEventsPrefix + "old-ams/removed a") })
	// b joins by changing its attributes and reporting an old firmware.
	if _, err := f.shadows.Update(ctx, "b", "", []byte(`{"state":{"reported":{"fw":"1.0"}}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.UpdateThing(ctx, "b", store.ThingPatch{Attributes: map[string]string{"site": "ams"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b added", func() bool { return f.pub.has(GroupEventsPrefix + "old-ams/added b") })
	// Connection-driven membership.
	if _, err := f.reg.CreateGroup(ctx, store.Group{Name: "online", Query: "connected = true"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "group loaded", func() bool { return f.idx.DynamicGroups() == 2 })
	f.bus.Publish(core.Message{Topic: core.PresenceConnected + "b", Payload: []byte(`{"event":"connected","thing":"b","time":"2026-12-05T10:00:00Z"}`)})
	waitFor(t, "b online", func() bool { return f.pub.has(GroupEventsPrefix + "online/added b") })
	f.bus.Publish(core.Message{Topic: core.PresenceDisconnected + "b", Payload: []byte(`{"event":"disconnected","thing":"b","time":"2026-12-05T10:01:00Z"}`)})
	waitFor(t, "b offline", func() bool { return f.pub.has(GroupEventsPrefix + "online/removed b") })
	// Deleting the thing removes it.
	if err := f.reg.DeleteThing(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b removed", func() bool { return f.pub.has(GroupEventsPrefix + "old-ams/removed b") })
	if got := counter(f.idx.groupEvents.WithLabelValues("added")); got != 3 {
		t.Errorf("added events = %v; want 3", got)
	}
	// A group's query can change; a dynamic group cannot take static members.
	if _, err := f.reg.UpdateGroup(ctx, store.Group{Name: "online", Query: "connected = "}); core.KindOf(err) != core.KindInvalid || !strings.Contains(err.Error(), "at 1:13") {
		t.Errorf("UpdateGroup(bad query) = %v; want invalid at 1:13", err)
	}
	if _, err := f.reg.UpdateThing(ctx, "a", store.ThingPatch{Groups: []string{"online"}}); core.KindOf(err) != core.KindInvalid {
		t.Errorf("UpdateThing(groups: [online]) = %v; want invalid", err)
	}
}

// TestFlood: a flood of shadow updates larger than the queue while a
// dynamic group is evaluated: the queue stays bounded, drops are counted,
// and the index converges on the stored state by reloading.
func TestFlood(t *testing.T) {
	f := setup(t, Options{QueueSize: 8})
	ctx := t.Context()
	for i := range 20 {
		f.thing(t, store.Thing{Name: fmt.Sprintf("t%02d", i)})
	}
	f.start(t)
	if _, err := f.reg.CreateGroup(ctx, store.Group{Name: "hot", Query: "shadow.reported.n >= 49"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			for n := range 50 {
				body := fmt.Sprintf(`{"state":{"reported":{"n":%d}}}`, n)
				if _, err := f.shadows.Update(ctx, fmt.Sprintf("t%02d", i), "", []byte(body)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// Meanwhile, stale changes straight into the queue (older versions
	// than the store's): they must not win over what a reload reads.
	for range 5000 {
		f.idx.OnShadowChange("t00", "", []byte(`{"state":{"reported":{"n":1}},"version":1}`))
	}
	wg.Wait()
	// The queue never held more than its bound.
	if n := len(f.idx.events); n > 8 {
		t.Errorf("queue length %d > 8", n)
	}
	if got := counter(f.idx.dropped.WithLabelValues("shadow")); got == 0 {
		t.Fatal("nothing was dropped: the flood did not exceed the queue, so this test proved nothing")
	}
	// Every thing converges on its last committed update, n = 49.
	want := make([]string, 20)
	for i := range want {
		want[i] = fmt.Sprintf("t%02d", i)
	}
	f.waitMatch(t, "shadow.reported.n = 49", want...)
	waitFor(t, "all members", func() bool { m, _, _ := f.idx.Members(ctx, "hot"); return len(m) == 20 })
}

func TestQueryErrors(t *testing.T) {
	f := setup(t, Options{Limits: fleetquery.Limits{MaxLength: 100, MaxDepth: 4}})
	// Before the load: a valid query is unavailable, an invalid one invalid.
	if _, err := f.idx.Count(t.Context(), "name = 'x'"); core.KindOf(err) != core.KindUnavailable {
		t.Errorf("Count before Start = %v; want unavailable", err)
	}
	f.start(t)
	for _, tc := range []struct {
		q, want string
		kind    core.Kind
	}{
		{"colour = 'red'", "at 1:1: unknown field", core.KindInvalid},
		{"connected = 'yes'", "at 1:13:", core.KindInvalid},
		{strings.Repeat("(", 5) + "name = 'a'" + strings.Repeat(")", 5), "nested deeper than 4", core.KindInvalid},
		{"name = '" + strings.Repeat("x", 200) + "'", "more than the limit of 100", core.KindInvalid},
	} {
		_, err := f.idx.Match(t.Context(), tc.q)
		if core.KindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Match(%.30q) = %v; want %v containing %q", tc.q, err, tc.kind, tc.want)
		}
	}
	// A query that matches nothing is no error.
	if names, err := f.idx.Match(t.Context(), "name = 'ghost'"); err != nil || len(names) != 0 {
		t.Errorf("Match(ghost) = %q, %v; want nothing", names, err)
	}
	if got := counter(f.idx.queryRefused.WithLabelValues("too_large")); got != 2 {
		t.Errorf("refused too_large = %v; want 2", got)
	}
}

// TestListPages: ?q= pages with the store's sorts and cursors.
func TestListPages(t *testing.T) {
	f := setup(t, Options{})
	ctx := context.Background()
	for i := range 7 {
		f.thing(t, store.Thing{Name: fmt.Sprintf("n%d", i), Tags: []string{"x"}})
	}
	f.start(t)
	for _, sortBy := range []string{"", "-name", "createdAt", "-createdAt", "lastSeen", "-lastSeen"} {
		var got []string
		after := ""
		for {
			p, err := f.idx.List(ctx, "tags = 'x' AND name != 'n3'", sortBy, after, 2)
			if err != nil {
				t.Fatalf("List(sort %q) = %v", sortBy, err)
			}
			if p.Total != 6 {
				t.Errorf("List(sort %q).Total = %d; want 6", sortBy, p.Total)
			}
			got = append(got, p.Names...)
			if p.Next == "" {
				break
			}
			after = p.Next
		}
		if len(got) != 6 || slices.Contains(got, "n3") {
			t.Errorf("pages of sort %q = %q", sortBy, got)
		}
		if sortBy == "-name" && got[0] != "n6" || sortBy == "" && got[0] != "n0" {
			t.Errorf("order of sort %q = %q", sortBy, got)
		}
	}
	if _, err := f.idx.List(ctx, "name = 'a'", "bogus", "", 10); core.KindOf(err) != core.KindInvalid {
		t.Errorf("List(sort bogus) = %v; want invalid", err)
	}
}

func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// TestTelemetryBeforeTheThing: a new thing's first message can reach the
// index before the reload that adds the thing (which reads the thing and
// its shadows, not telemetry): its values are kept for that reload, not
// lost until the thing publishes again. A message from a thing that does
// not exist is forgotten at the reload.
func TestTelemetryBeforeTheThing(t *testing.T) {
	f := setup(t, Options{})
	f.start(t)
	// Created behind the registry's back: no event, so only the message
	// tells the index about it.
	if _, err := f.st.Things().Create(t.Context(), store.Thing{Name: "late", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	f.bus.Publish(core.Message{Topic: "things/late/telemetry", Payload: []byte(`{"lat": 52.1, "lon": 4.3}`), Received: time.Now()})
	f.bus.Publish(core.Message{Topic: "things/ghost/telemetry", Payload: []byte(`{"lat": 1, "lon": 2}`), Received: time.Now()})
	f.waitMatch(t, "telemetry.lat > 52", "late")
	waitFor(t, "the ghost's values forgotten", func() bool {
		f.idx.mu.RLock()
		defer f.idx.mu.RUnlock()
		return len(f.idx.early) == 0
	})
	pos, _, total, err := f.idx.Positions(t.Context(), "lat", "lon", "", 10)
	if err != nil || total != 1 || pos[0].Thing != "late" {
		t.Fatalf("Positions = %+v, %d, %v; want late only", pos, total, err)
	}
}
