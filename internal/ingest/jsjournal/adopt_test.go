package jsjournal_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/ingest"
	"github.com/moteiot/mote/internal/ingest/jsjournal"
	"github.com/moteiot/mote/internal/pgtest"
	"github.com/moteiot/mote/internal/telemetry"
	telemetrypostgres "github.com/moteiot/mote/internal/telemetry/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// writerOf is one node's telemetry writer on the journal of node (its
// own, or the lost node's it adopts), with small batches so that the
// writers of a race interleave.
type writerOf struct {
	store  *telemetrypostgres.Store
	w      *telemetry.Writer
	handed atomic.Int64 // messages handed to this writer
}

func openWriter(t *testing.T, url, journal string) *writerOf {
	t.Helper()
	ctx := context.Background()
	s, err := telemetrypostgres.Open(ctx, url, telemetrypostgres.Options{MaxConns: 4, Journal: journal})
	if err != nil {
		t.Fatal(err)
	}
	w, err := telemetry.NewWriter(ctx, s, telemetry.WriterOptions{FlushPoints: 5, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	wo := &writerOf{store: s, w: w}
	t.Cleanup(func() { _ = w.Close(); _ = s.Close() })
	return wo
}

// consumer stores message i (its payload) as one point of value i, with
// the message's sequence number: what the rules' durable pass does.
func (wo *writerOf) consumer() ingest.Consumer {
	return ingest.Funcs{Wants: func(string) bool { return true }, Apply: func(m core.Message) {
		wo.handed.Add(1)
		id, _ := strconv.Atoi(string(m.Payload))
		p := []telemetry.Point{{Thing: "dev", Key: "m", TS: time.Now().UnixMilli(), Value: telemetry.Number(float64(id))}}
		for {
			err := wo.w.Add(context.Background(), p, m.Seq)
			if err == nil || errors.Is(err, telemetry.ErrWriterClosed) || core.KindOf(err) == core.KindInternal {
				return
			}
		}
	}}
}

func (wo *writerOf) target() *jsjournal.Target {
	return &jsjournal.Target{Consumer: wo.consumer(), Applied: wo.w.Committed, Flush: wo.w.Flush,
		Close: func() error { return wo.w.Flush(context.Background()) }}
}

// appendBacklog has node append n acknowledged messages (payloads
// first..first+n-1) that no consumer applies: the node then dies.
func appendBacklog(t *testing.T, s *server.Server, node string, first, n int) {
	t.Helper()
	j, err := jsjournal.Open(context.Background(), jsjournal.Options{Conn: connect(t, s), Node: node,
		Applied: func() uint64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	for i := first; i < first+n; i++ {
		if _, err := j.Append(core.Message{Topic: "t", Payload: []byte(strconv.Itoa(i)), QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	_ = j.Close()
}

// stored counts the rows of each message id.
func stored(t *testing.T, url string) map[int]int {
	t.Helper()
	s, err := telemetrypostgres.Open(context.Background(), url, telemetrypostgres.Options{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.Pool().Query(context.Background(), `SELECT num, count(*) FROM telemetry_points GROUP BY num`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int]int{}
	for rows.Next() {
		var (
			v float64
			c int
		)
		if err := rows.Scan(&v, &c); err != nil {
			t.Fatal(err)
		}
		out[int(v)] = c
	}
	return out
}

func exactlyOnce(t *testing.T, got map[int]int, n int) {
	t.Helper()
	for i := range n {
		if got[i] != 1 {
			t.Errorf("message %d stored %d times; want once", i, got[i])
		}
	}
	if len(got) != n {
		t.Errorf("%d distinct messages stored; want %d", len(got), n)
	}
}

func subjectCount(t *testing.T, s *server.Server, node string) uint64 {
	t.Helper()
	js, err := jetstream.New(connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), jsjournal.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	subj := jsjournal.DefaultPrefix + "." + node
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subj]
}

// TestAdoptAfterDeath: node a applied and stored its first 20 messages,
// then died with 30 more acknowledged in JetStream; a survivor adopts a's
// subject: the 30 are stored under a's replay point, the 20 not again,
// and the subject is purged.
func TestAdoptAfterDeath(t *testing.T) {
	url, s := pgtest.DB(t), startServer(t)
	a := openWriter(t, url, "a")
	ja, err := jsjournal.Open(context.Background(), jsjournal.Options{Conn: connect(t, s), Node: "a",
		Applied: a.w.Committed})
	if err != nil {
		t.Fatal(err)
	}
	var applied atomic.Int32
	inner := a.consumer()
	if _, err := ja.Start(ingest.Funcs{Wants: inner.Durable, Apply: func(m core.Message) {
		if applied.Add(1) <= 20 { // then it "dies": the rest is never applied
			inner.ApplyDurable(m)
		}
	}}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := ja.Append(core.Message{Topic: "t", Payload: []byte(strconv.Itoa(i)), QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "node a handing over its 50 messages", func() bool { return applied.Load() == 50 })
	if err := a.w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	point := a.w.Committed()
	_ = ja.Close()

	b := openWriter(t, url, "a") // the survivor, writing under a's point
	js, err := jetstream.New(connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	res, err := jsjournal.Adopt(context.Background(), jsjournal.AdoptOptions{JS: js, Node: "a", Target: b.target()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Adopted != 30 || !res.Drained || res.Last <= point {
		t.Errorf("Adopt = %+v; want 30 adopted, drained, replay point past %d", res, point)
	}
	exactlyOnce(t, stored(t, url), 50)
	if last, err := b.store.LastSeq(context.Background()); err != nil || last != res.Last {
		t.Errorf("a's LastSeq = %d, %v; want %d", last, err, res.Last)
	}
	if n := subjectCount(t, s, "a"); n != 0 {
		t.Errorf("a's subject holds %d messages after the adoption; want 0 (purged)", n)
	}
	// Adopting again finds nothing.
	res, err = jsjournal.Adopt(context.Background(), jsjournal.AdoptOptions{JS: js, Node: "a", Target: b.target()})
	if err != nil || res.Adopted != 0 || !res.Drained {
		t.Errorf("second Adopt = %+v, %v; want nothing adopted, drained", res, err)
	}
}

// TestAdoptRace: node a died with 300 acknowledged messages unapplied;
// two survivors adopt its subject at once while a itself comes back and
// reads its subject from its replay point. Every message is stored
// exactly once — the store's per-message guard, not timing — and the
// three together were handed more than 300 (the guard really acted).
func TestAdoptRace(t *testing.T) {
	url, s := pgtest.DB(t), startServer(t)
	const n = 300
	appendBacklog(t, s, "a", 0, n)

	back := openWriter(t, url, "a")
	x, y := openWriter(t, url, "a"), openWriter(t, url, "a")
	js, err := jetstream.New(connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, wo := range []*writerOf{x, y} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := jsjournal.Adopt(context.Background(), jsjournal.AdoptOptions{JS: js, Node: "a", Target: wo.target()})
			errs <- err
		}()
	}
	ja, err := jsjournal.Open(context.Background(), jsjournal.Options{Conn: connect(t, s), Node: "a",
		Applied: back.w.Committed})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ja.Start(back.consumer()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	waitFor(t, "every message stored", func() bool { return len(stored(t, url)) == n })
	_ = ja.Close()
	for _, wo := range []*writerOf{back, x, y} {
		if err := wo.w.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	exactlyOnce(t, stored(t, url), n)
	handed := back.handed.Load() + x.handed.Load() + y.handed.Load()
	t.Logf("handed: node a %d, adopters %d and %d", back.handed.Load(), x.handed.Load(), y.handed.Load())
	if handed <= n {
		t.Errorf("the three writers were handed %d messages in all; want more than %d, or the race never happened", handed, n)
	}
}

// TestAdopter: the lease's Lost starts an adoption that drains the lost
// node's subject (counted); a node whose claim another survivor holds is
// not adopted here and stops when the node is heard again; this node's
// own id is never adopted.
func TestAdopter(t *testing.T) {
	url, s := pgtest.DB(t), startServer(t)
	appendBacklog(t, s, "a", 0, 40)
	appendBacklog(t, s, "b", 1000, 5)
	claimer, err := telemetrypostgres.Open(context.Background(), url, telemetrypostgres.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = claimer.Close() })
	releaseB, ok, err := claimer.ClaimJournal(context.Background(), "b") // another survivor adopts b
	if err != nil || !ok {
		t.Fatalf("claim b: %v %v", ok, err)
	}
	defer releaseB()

	var mu sync.Mutex
	alive := map[string]bool{}
	writers := map[string]*writerOf{} // one per node, reused by the retries
	reg := prometheus.NewRegistry()
	ad, err := jsjournal.NewAdopter(jsjournal.AdopterOptions{
		Conn: connect(t, s), Self: "me", RetryEvery: 20 * time.Millisecond, Metrics: reg,
		Alive: func(node string) bool { mu.Lock(); defer mu.Unlock(); return alive[node] },
		Open: func(ctx context.Context, node string) (*jsjournal.Target, error) {
			mu.Lock()
			wo := writers[node]
			if wo == nil {
				wo = openWriter(t, url, node)
				writers[node] = wo
			}
			mu.Unlock()
			release, ok, err := wo.store.ClaimJournal(ctx, node)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, jsjournal.ErrClaimed
			}
			tg := wo.target()
			tg.Close = func() error { defer release(); return wo.w.Flush(context.Background()) }
			return tg, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ad.Close() })
	ad.Lost("me")
	if ad.Running("me") {
		t.Error("adopting this node's own subject")
	}
	ad.Lost("a")
	ad.Lost("a") // once at a time
	ad.Lost("b")
	result := func(r string) float64 { return counter(t, reg, "mote_cluster_ingest_adoptions_total", r) }
	waitFor(t, "a adopted", func() bool { return !ad.Running("a") })
	waitFor(t, "b's claim seen held", func() bool { return result(jsjournal.ResultClaimed) == 1 })
	mu.Lock()
	alive["b"] = true // b is heard again
	mu.Unlock()
	waitFor(t, "b's adoption given up", func() bool { return !ad.Running("b") })
	if got := result(jsjournal.ResultDrained); got != 1 {
		t.Errorf("drained adoptions = %v; want 1 (a)", got)
	}
	if got := result(jsjournal.ResultBack); got != 1 {
		t.Errorf("adoptions ended by the node coming back = %v; want 1 (b)", got)
	}
	if got := counter(t, reg, "mote_cluster_ingest_adopted_total", ""); got != 40 {
		t.Errorf("mote_cluster_ingest_adopted_total = %v; want 40", got)
	}
	exactlyOnce(t, stored(t, url), 40) // a's 40, none of b's
	if n := subjectCount(t, s, "b"); n != 5 {
		t.Errorf("b's subject holds %d; want its 5 (left to its claimer)", n)
	}
}

// counter returns the counter of name (with result r unless "") in reg.
func counter(t *testing.T, reg *prometheus.Registry, name, r string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if r == "" {
				return m.GetCounter().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == r {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{result=%q}", name, r)
	return 0
}

// TestAdopterSweep: a node that died before this one started is never
// heard by the lease; the sweep a lease timeout after Start finds its
// subject and adopts it — not this node's own subject.
func TestAdopterSweep(t *testing.T) {
	url, s := pgtest.DB(t), startServer(t)
	appendBacklog(t, s, "c", 0, 7)
	appendBacklog(t, s, "me", 100, 3)
	reg := prometheus.NewRegistry()
	var opened atomic.Int32
	ad, err := jsjournal.NewAdopter(jsjournal.AdopterOptions{
		Conn: connect(t, s), Self: "me", RetryEvery: 20 * time.Millisecond, SweepAfter: 20 * time.Millisecond, Metrics: reg,
		Open: func(ctx context.Context, node string) (*jsjournal.Target, error) {
			opened.Add(1)
			return openWriter(t, url, node).target(), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ad.Close() })
	ad.Start(func(string) bool { return false }) // nobody heard
	waitFor(t, "c's subject adopted", func() bool {
		return counter(t, reg, "mote_cluster_ingest_adoptions_total", jsjournal.ResultDrained) == 1
	})
	exactlyOnce(t, stored(t, url), 7)
	if n := subjectCount(t, s, "me"); n != 3 {
		t.Errorf("this node's own subject holds %d; want its 3 (never adopted)", n)
	}
	if n := opened.Load(); n != 1 {
		t.Errorf("%d adoptions opened; want 1 (c)", n)
	}
}
