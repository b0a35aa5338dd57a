package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
)

// benchFixture is a fixture whose n things are inserted in one
// transaction (creating 100,000 things one by one would take minutes).
func benchFixture(b *testing.B, n int) (*fixture, []string) {
	b.Helper()
	dir := b.TempDir()
	path := filepath.Join(dir, "mote.db")
	st, err := sqlite.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	stmt, err := tx.Prepare(`INSERT INTO things (name, created_at, updated_at) VALUES (?, 0, 0)`)
	if err != nil {
		b.Fatal(err)
	}
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("t%06d", i)
		if _, err := stmt.Exec(names[i]); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	f := &fixture{st: st, pub: &published{}, clk: &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, dir: dir}
	f.svc = f.service(b)
	return f, names
}

// BenchmarkCreate10k creates a job over 10,000 things (one transaction,
// one execution per thing).
func BenchmarkCreate10k(b *testing.B) {
	f, names := benchFixture(b, 10_000)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if _, err := f.svc.Create(ctx, Spec{JobID: fmt.Sprintf("j%d", i), Targets: Targets{Things: names}, Document: []byte(`{"op":"x"}`)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScheduler100k releases a job of 100,000 executions at
// maximumPerMinute 1000 (the AWS maximum) over a simulated 100 minutes:
// one scheduler tick per simulated second, each releasing what the rate
// allows (about 17) and counting the job's executions for its abort
// criteria. It reports the time per tick, and checks that exactly the
// rate was released.
func BenchmarkScheduler100k(b *testing.B) {
	f, _ := benchFixture(b, 100_000)
	ctx := context.Background()
	f.svc.opts.MaxTargets = 100_000
	sp := Spec{JobID: "big", Targets: Targets{Groups: nil, Things: nil}, Document: []byte(`{"op":"x"}`),
		Rollout: &Rollout{MaximumPerMinute: 1000},
		Abort:   &Abort{Criteria: []AbortCriterion{{FailureType: FailureAll, ThresholdPercentage: 50, MinNumberOfExecutedThings: 100}}}}
	// Create through the store directly: targets.things is capped at
	// 10,000 names per request.
	names := make([]string, 100_000)
	for i := range names {
		names[i] = fmt.Sprintf("t%06d", i)
	}
	spec := []byte(`{"jobId":"big","targets":{"groups":["all"]},"document":{"op":"x"},"rollout":{"maximumPerMinute":1000},"abort":{"criteria":[{"failureType":"ALL","action":"CANCEL","thresholdPercentage":50,"minNumberOfExecutedThings":100}]}}`)
	start := time.Now()
	now := f.clk.Now()
	j, n, err := f.st.Jobs().Create(ctx, store.Job{ID: "big", Status: store.JobInProgress, Spec: spec, CreatedAt: now, ReleasedAt: now.Add(-60 * time.Millisecond)}, names)
	if err != nil || n != 100_000 {
		b.Fatalf("create: %d %v", n, err)
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "create-100k-ms")
	_ = sp
	e, err := entryOf(j)
	if err != nil {
		b.Fatal(err)
	}
	f.svc.active["big"] = e
	b.ResetTimer()
	for range b.N {
		f.clk.Add(time.Second)
		f.svc.Tick(ctx)
	}
	b.StopTimer()
	c := f.counts(b, "big")
	want := min(100_000, 1+b.N*1000/60)
	if got := c["QUEUED"]; got < want-1 || got > want+1 {
		b.Fatalf("after %d ticks of 1s at 1000/min: %d released; want %d", b.N, got, want)
	}
}
