package audit_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/moteiot/mote/internal/audit"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(sqlitetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// gate is an AuditStore whose Append fails while down is set, and blocks
// while hold is set (a dead or hung database).
type gate struct {
	store.AuditStore
	down    atomic.Bool
	mu      sync.Mutex
	held    chan struct{}
	appends atomic.Int64
}

func (g *gate) Append(ctx context.Context, e []store.AuditEntry) error {
	g.appends.Add(1)
	g.mu.Lock()
	h := g.held
	g.mu.Unlock()
	if h != nil {
		select {
		case <-h:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if g.down.Load() {
		return errors.New("database is down")
	}
	return g.AuditStore.Append(ctx, e)
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

func TestRecordAndList(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	r := audit.New(audit.Options{Store: st.Audit()})
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 250 {
		if err := r.Record(ctx, store.AuditEntry{ActorKind: audit.ActorSystem, ActorName: "test", Action: "thing.create",
			TargetKind: "thing", TargetName: "t" + string(rune('a'+i%3)), Status: 201}); err != nil {
			t.Fatal(err)
		}
	}
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := r.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	var ids []string
	cursor := ""
	for {
		page, next, err := r.List(ctx, store.AuditFilter{After: cursor, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			ids = append(ids, e.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(ids) != 250 {
		t.Fatalf("listed %d entries; want 250", len(ids))
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] >= ids[i-1] {
			t.Fatalf("ids not newest first at %d: %s then %s", i, ids[i-1], ids[i])
		}
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if _, err := r.Reserve(ctx); core.KindOf(err) != core.KindUnavailable {
		t.Errorf("Reserve after Close = %v; want unavailable", err)
	}
}

// TestFullQueueRefuses: with the store hung, the queue fills, Reserve
// waits QueueWait and refuses (counted); once the store answers again
// every committed entry is stored and new reservations succeed.
func TestFullQueueRefuses(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	g := &gate{AuditStore: st.Audit(), held: make(chan struct{})}
	reg := prometheus.NewRegistry()
	r := audit.New(audit.Options{Store: g, Queue: 3, QueueWait: 50 * time.Millisecond, Metrics: reg})
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range 3 {
		s, err := r.Reserve(ctx)
		if err != nil {
			t.Fatalf("Reserve %d: %v", i, err)
		}
		s.Commit(store.AuditEntry{ActorKind: "token", ActorName: "x", Action: "thing.delete", TargetKind: "thing", TargetName: "a", Status: 204})
	}
	start := time.Now()
	if _, err := r.Reserve(ctx); !errors.Is(err, audit.ErrFull) || core.KindOf(err) != core.KindUnavailable {
		t.Fatalf("Reserve with a full queue = %v; want ErrFull", err)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Errorf("Reserve refused after %v; want it to wait --audit-queue-wait first", waited)
	}
	metric, _ := reg.Gather()
	var refused float64
	for _, mf := range metric {
		if mf.GetName() == "mote_audit_refused_total" {
			refused = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if refused != 1 {
		t.Errorf("mote_audit_refused_total = %v; want 1", refused)
	}
	// The store comes back: the three are stored and there is room again.
	g.mu.Lock()
	close(g.held)
	g.held = nil
	g.mu.Unlock()
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	got, _ := st.Audit().List(ctx, store.AuditFilter{})
	if len(got) != 3 {
		t.Errorf("stored %d entries; want 3", len(got))
	}
	s, err := r.Reserve(ctx)
	if err != nil {
		t.Fatalf("Reserve after the store recovered: %v", err)
	}
	s.Cancel()
}

// TestFailedWritesRetried: a store that fails is retried until it works;
// no entry is lost.
func TestFailedWritesRetried(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	g := &gate{AuditStore: st.Audit()}
	g.down.Store(true)
	reg := prometheus.NewRegistry()
	r := audit.New(audit.Options{Store: g, Metrics: reg})
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := r.Record(ctx, store.AuditEntry{ActorKind: "system", Action: "x.create", TargetKind: "x", TargetName: "y", Status: 200}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "two failed attempts", func() bool { return g.appends.Load() >= 2 })
	g.down.Store(false)
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := st.Audit().List(ctx, store.AuditFilter{})
	if len(got) != 5 {
		t.Errorf("stored %d entries; want 5 (retried, none lost)", len(got))
	}
	if n := testutil.ToFloat64(counter(t, reg, "mote_audit_write_errors_total")); n < 1 {
		t.Errorf("mote_audit_write_errors_total = %v; want at least 1", n)
	}
}

// TestCloseWithDeadStoreReportsLoss: Close gives up after CloseTimeout
// and says how many entries it lost.
func TestCloseWithDeadStoreReportsLoss(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	g := &gate{AuditStore: st.Audit()}
	g.down.Store(true)
	r := audit.New(audit.Options{Store: g, CloseTimeout: 100 * time.Millisecond})
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Record(ctx, store.AuditEntry{ActorKind: "system", Action: "x.create"}); err != nil {
		t.Fatal(err)
	}
	err := r.Close()
	if err == nil || !strings.Contains(err.Error(), "1 entries") {
		t.Errorf("Close with a dead store = %v; want it to report 1 lost entry", err)
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	old := time.Now().Add(-48 * time.Hour)
	if err := st.Audit().Append(ctx, []store.AuditEntry{
		{ID: "0000000000000001", Time: old, ActorKind: "system", Action: "a"},
		{ID: "0000000000000002", Time: time.Now(), ActorKind: "system", Action: "b"},
	}); err != nil {
		t.Fatal(err)
	}
	r := audit.New(audit.Options{Store: st.Audit(), Retention: 24 * time.Hour})
	if err := r.Start(ctx); err != nil { // prunes once at start
		t.Fatal(err)
	}
	defer r.Close()
	waitFor(t, "the pruner", func() bool {
		got, _ := st.Audit().List(ctx, store.AuditFilter{})
		return len(got) == 1 && got[0].Action == "b"
	})
}

func counter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "x"})
			c.Add(mf.GetMetric()[0].GetCounter().GetValue())
			return c
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

func TestDocumentRedacts(t *testing.T) {
	in := `{"name":"t1","secret":"s3cr3t","Password":"pw","nested":{"privateKey":"-----BEGIN","list":[{"token":"tk"}],"api_key":"ak"},"attributes":{"site":"x"},"key":"a2V5","url":"/dl?sig=abc"}`
	out, omitted := audit.Document([]byte(in), 8192)
	if omitted {
		t.Fatal("omitted")
	}
	for _, secret := range []string{"s3cr3t", "pw\"", "BEGIN", "tk", "ak\"", "a2V5", "sig=abc"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("Document(...) = %s; still holds %q", out, secret)
		}
	}
	if !strings.Contains(string(out), `"site":"x"`) || !strings.Contains(string(out), `"name":"t1"`) {
		t.Errorf("Document(...) = %s; lost non-secret fields", out)
	}
	if out, omitted := audit.Document([]byte(`{"a":"`+strings.Repeat("x", 100)+`"}`), 50); out != nil || !omitted {
		t.Errorf("Document(large) = %s, %v; want nil, omitted", out, omitted)
	}
	if out, _ := audit.Document([]byte("not json password=x"), 100); out != nil {
		t.Errorf("Document(not JSON) = %s; want nil", out)
	}
}

func FuzzDocument(f *testing.F) {
	f.Add([]byte(`{"secret":"zzsecretzz","a":[{"password":"zzsecretzz"}]}`))
	f.Add([]byte(`[1,2,{"token":"zzsecretzz"}]`))
	f.Add([]byte(`"plain"`))
	f.Add([]byte(`{"a":1}{"b":2}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		out, _ := audit.Document(doc, 1<<16)
		if out == nil {
			return
		}
		if strings.Contains(string(doc), `"zzsecretzz"`) && strings.Contains(string(out), "zzsecretzz") &&
			strings.Contains(string(doc), `"secret":"zzsecretzz"`) && !strings.Contains(string(out), `"secret":"[redacted]"`) {
			t.Errorf("Document(%s) = %s: a secret field kept its value", doc, out)
		}
	})
}
