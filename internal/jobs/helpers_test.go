package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

// storeThings is the registry's read side on a store.
type storeThings struct{ st store.Store }

func (t storeThings) GetThing(ctx context.Context, name string) (store.Thing, error) {
	return t.st.Things().Get(ctx, name)
}

func (t storeThings) ListThings(ctx context.Context, f store.ThingFilter) ([]store.Thing, string, error) {
	list, err := t.st.Things().List(ctx, f)
	if err != nil || len(list) < f.Limit || f.Limit == 0 {
		return list, "", err
	}
	return list, list[len(list)-1].Name, nil
}

// published records what the service published.
type published struct {
	mu   sync.Mutex
	msgs []pub
}

type pub struct {
	topic string
	body  string
}

func (p *published) Publish(topic string, payload []byte, _ bool, _ byte) error {
	p.mu.Lock()
	p.msgs = append(p.msgs, pub{topic, string(payload)})
	p.mu.Unlock()
	return nil
}

func (p *published) on(topic string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, m := range p.msgs {
		if m.topic == topic {
			out = append(out, m.body)
		}
	}
	return out
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	st  store.Store
	svc *Service
	pub *published
	clk *clock
	dir string
}

// newFixture opens a SQLite store in a temporary directory with things
// t0..t{n-1} and a service on it (not started: tests call Tick).
func newFixture(tb testing.TB, n int) *fixture {
	tb.Helper()
	dir := tb.TempDir()
	sqlitetest.Seed(tb, filepath.Join(dir, "mote.db"))
	st, err := sqlite.Open(filepath.Join(dir, "mote.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	for i := range n {
		if _, err := st.Things().Create(context.Background(), store.Thing{Name: fmt.Sprintf("t%d", i), Enabled: true}); err != nil {
			tb.Fatal(err)
		}
	}
	f := &fixture{st: st, pub: &published{}, clk: &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, dir: dir}
	f.svc = f.service(tb)
	return f
}

// service returns a new service on the fixture's store (a restart).
func (f *fixture) service(tb testing.TB) *Service {
	s := New(Options{Store: f.st.Jobs(), Things: storeThings{f.st}, Publisher: f.pub, Now: f.clk.Now, Interval: time.Hour})
	return s
}

func (f *fixture) create(tb testing.TB, spec string) Info {
	tb.Helper()
	sp, err := ParseSpec([]byte(spec), 0)
	if err != nil {
		tb.Fatalf("ParseSpec(%s): %v", spec, err)
	}
	info, err := f.svc.Create(context.Background(), sp)
	if err != nil {
		tb.Fatalf("Create(%s): %v", spec, err)
	}
	return info
}

func (f *fixture) counts(tb testing.TB, id string) map[string]int {
	tb.Helper()
	info, err := f.svc.Get(context.Background(), id)
	if err != nil {
		tb.Fatal(err)
	}
	return info.Counts
}

// device sends a device request and returns the accepted answer as JSON,
// or the rejection's code.
func (f *fixture) device(tb testing.TB, thing, op, job, payload string) (map[string]any, string) {
	tb.Helper()
	a, rej := f.svc.Device(context.Background(), DeviceRequest{Thing: thing, Op: op, JobID: job, Payload: []byte(payload)})
	if rej != nil {
		return nil, rej.Code
	}
	b, _ := json.Marshal(a)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	return m, ""
}

func things(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%q", fmt.Sprintf("t%d", i))
	}
	return "[" + b.String() + "]"
}

// flush publishes the pending notifications (the notifier's work, for a
// service that was not started).
func (f *fixture) flush(tb testing.TB) {
	tb.Helper()
	for _, th := range f.svc.notify.take(1 << 30) {
		if err := f.svc.notifyThing(context.Background(), th); err != nil {
			tb.Fatal(err)
		}
	}
}
