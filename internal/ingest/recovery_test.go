package ingest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/wal"
)

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

func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func openWith(t *testing.T, dir string, c *consumer, reg prometheus.Registerer) (*Journal, error) {
	t.Helper()
	return Open(Options{Dir: dir, NoSync: true, Applied: c.applied.Load, Metrics: reg})
}

// appendN appends n messages and drains the journal without a final
// checkpoint, as a crash would leave it.
func appendN(t *testing.T, dir string, n int) {
	t.Helper()
	c := &consumer{}
	j := open(t, dir, c)
	if _, err := j.Start(c); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := j.Append(core.Message{Topic: fmt.Sprintf("m%d", i), Payload: []byte(`{"v":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	j.Drain()
}

func segment(t *testing.T, dir string) string {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	if len(segs) != 1 {
		t.Fatalf("segments %v; want one", segs)
	}
	return segs[0]
}

func TestTornTailIsCountedAndReplayed(t *testing.T) {
	dir := t.TempDir()
	appendN(t, dir, 5)
	f, _ := os.OpenFile(segment(t, dir), os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{30, 0, 0, 0, 9, 9, 9, 9, 1, 'x'}) // half a record: a crash during a write
	f.Close()

	c := &consumer{}
	j, err := openWith(t, dir, c, prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("Open with a torn tail = %v; want it cut off", err)
	}
	defer j.Close()
	if n, err := j.Start(c); err != nil || n != 5 {
		t.Fatalf("replayed %d, %v; want 5", n, err)
	}
	if got := value(j.m.torn); got != 10 {
		t.Fatalf("mote_ingest_torn_tail_bytes_total = %v; want 10", got)
	}
}

func TestCorruptRecordRefusesOpen(t *testing.T) {
	dir := t.TempDir()
	appendN(t, dir, 10)
	path := segment(t, dir)
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0x20
	os.WriteFile(path, b, 0o600)

	_, err := openWith(t, dir, &consumer{}, nil)
	var ce *wal.CorruptError
	if !errors.As(err, &ce) || ce.Path != path {
		t.Fatalf("Open of a journal with a damaged record = %v; want a *wal.CorruptError in %s", err, path)
	}
	if after, _ := os.ReadFile(path); string(after) != string(b) {
		t.Fatal("Open changed the damaged journal")
	}
}

func TestWriteFailureRefusesThenRecovers(t *testing.T) {
	c := &consumer{}
	j, err := openWith(t, t.TempDir(), c, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Start(c); err != nil {
		t.Fatal(err)
	}
	acked := 0
	if _, err := j.Append(core.Message{Topic: "before"}); err != nil {
		t.Fatal(err)
	}
	acked++
	var full atomic.Bool
	full.Store(true)
	j.SetFault(func(op string) error {
		if full.Load() {
			return syscall.ENOSPC
		}
		return nil
	})
	_, err = j.Append(core.Message{Topic: "refused"})
	if core.KindOf(err) != core.KindInsufficientStorage {
		t.Fatalf("Append on a full disk = %v (kind %v); want insufficient_storage", err, core.KindOf(err))
	}
	if j.Err() == nil {
		t.Fatal("Err() = nil while the disk is full")
	}
	waitFor(t, "a retry to fail", func() bool { return value(j.m.writeErrors) >= 2 })
	if value(j.m.failed) != 1 {
		t.Fatalf("mote_ingest_append_failures_total = %v; want 1", value(j.m.failed))
	}

	full.Store(false)
	waitFor(t, "the journal to write again", func() bool { return j.Err() == nil })
	for range 3 {
		if _, err := j.Append(core.Message{Topic: "after"}); err != nil {
			t.Fatalf("Append after recovery = %v", err)
		}
		acked++
	}
	j.Drain()
	if seqs, topics := c.snapshot(); len(seqs) != acked || fmt.Sprint(seqs) != "[1 2 3 4]" || topics[0] != "before" {
		t.Fatalf("applied %v %v; want the %d acknowledged messages numbered 1..4", seqs, topics, acked)
	}
	if value(j.m.recovered) != 1 {
		t.Fatalf("mote_ingest_write_recoveries_total = %v; want 1", value(j.m.recovered))
	}
	j.Close()
}
