package wal

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

func open(t testing.TB, dir string, o Options) *Log {
	t.Helper()
	l, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	return l
}

func replayAll(t *testing.T, l *Log, after uint64) map[uint64]string {
	t.Helper()
	got := map[uint64]string{}
	last := after
	err := l.Replay(after, func(seq uint64, rec []byte) error {
		if seq != last+1 {
			return fmt.Errorf("replay: seq %d after %d", seq, last)
		}
		last = seq
		got[seq] = string(rec)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestAppendReplayReopen(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{SegmentSize: 100})
	for i := 1; i <= 50; i++ {
		seq, err := l.Append([]byte(fmt.Sprintf("rec-%d", i)))
		if err != nil || seq != uint64(i) {
			t.Fatalf("Append %d = %d, %v; want seq %d", i, seq, err, i)
		}
	}
	if got := l.LastSeq(); got != 50 {
		t.Fatalf("LastSeq = %d; want 50", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	if len(segs) < 5 {
		t.Fatalf("%d segments with SegmentSize 100; want several", len(segs))
	}

	l = open(t, dir, Options{SegmentSize: 100})
	defer l.Close()
	got := replayAll(t, l, 0)
	if len(got) != 50 || got[1] != "rec-1" || got[50] != "rec-50" {
		t.Fatalf("replay after reopen: %d records, first %q, last %q", len(got), got[1], got[50])
	}
	if seq, err := l.Append([]byte("next")); err != nil || seq != 51 {
		t.Fatalf("Append after reopen = %d, %v; want 51", seq, err)
	}
	if got := replayAll(t, l, 48); len(got) != 3 || got[51] != "next" {
		t.Fatalf("Replay(after 48) = %v", got)
	}
}

func TestCheckpointDeletesSegments(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{SegmentSize: 64})
	for i := 0; i < 40; i++ {
		if _, err := l.Append(bytes.Repeat([]byte{'x'}, 20)); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err := l.SetCheckpoint(30); err != nil {
		t.Fatal(err)
	}
	after, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	if len(after) >= len(before) {
		t.Fatalf("segments before checkpoint %d, after %d; want fewer", len(before), len(after))
	}
	if cp, _ := l.Checkpoint(); cp != 30 {
		t.Fatalf("Checkpoint = %d; want 30", cp)
	}
	got := replayAll(t, l, 30)
	if len(got) != 10 {
		t.Fatalf("records after checkpoint = %d; want 10", len(got))
	}
	l.Close()
	// Numbering continues after a reopen even if every segment before the
	// checkpoint is gone.
	l = open(t, dir, Options{SegmentSize: 64})
	defer l.Close()
	if seq, _ := l.Append([]byte("y")); seq != 41 {
		t.Fatalf("seq after reopen = %d; want 41", seq)
	}
}

func TestTornTailIsCut(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(b []byte) []byte
	}{
		{"half a header", func(b []byte) []byte { return append(b, 5, 0, 0) }},
		{"short payload", func(b []byte) []byte { return append(b, 10, 0, 0, 0, 1, 2, 3, 4, 'a', 'b') }},
		{"bad checksum", func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }},
		{"absurd length", func(b []byte) []byte { return append(b, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir, Options{})
			for i := 0; i < 3; i++ {
				l.Append([]byte(fmt.Sprintf("r%d", i)))
			}
			l.Close()
			path := filepath.Join(dir, segName(1))
			b, _ := os.ReadFile(path)
			os.WriteFile(path, tc.corrupt(b), 0o600)

			l = open(t, dir, Options{})
			defer l.Close()
			got := replayAll(t, l, 0)
			want := 3
			if tc.name == "bad checksum" {
				want = 2 // the last record itself is damaged
			}
			if len(got) != want {
				t.Fatalf("records after a %s: %d; want %d", tc.name, len(got), want)
			}
			seq, err := l.Append([]byte("after"))
			if err != nil || seq != uint64(want+1) {
				t.Fatalf("Append after repair = %d, %v; want %d", seq, err, want+1)
			}
			if got := replayAll(t, l, 0); got[seq] != "after" {
				t.Fatalf("appended record not readable after repair: %v", got)
			}
		})
	}
}

func TestConcurrentAppendsAreGroupCommitted(t *testing.T) {
	l := open(t, t.TempDir(), Options{})
	defer l.Close()
	const writers, each = 16, 100
	var wg sync.WaitGroup
	seen := make([]bool, writers*each+1)
	var mu sync.Mutex
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				seq, err := l.Append([]byte(strconv.Itoa(w)))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[seq] {
					t.Errorf("seq %d given twice", seq)
				}
				seen[seq] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got := len(replayAll(t, l, 0)); got != writers*each {
		t.Fatalf("replayed %d; want %d", got, writers*each)
	}
}

func TestClosedLogRefusesAppends(t *testing.T) {
	l := open(t, t.TempDir(), Options{})
	l.Close()
	if _, err := l.Append([]byte("x")); err != ErrClosed {
		t.Fatalf("Append after Close = %v; want ErrClosed", err)
	}
	if _, err := l.Append(make([]byte, MaxRecord+1)); err == nil {
		t.Fatal("oversized record accepted")
	}
}

// TestCrashKeepsAcknowledged kills a process that is appending (SIGKILL)
// and checks that every record whose Append returned is in the log.
func TestCrashKeepsAcknowledged(t *testing.T) {
	if dir := os.Getenv("WAL_CRASH_CHILD"); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledged$")
	cmd.Env = append(os.Environ(), "WAL_CRASH_CHILD="+dir)
	// The child appends until it is killed, or until its stdin closes
	// (this test ended without killing it).
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[uint64]string{}
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 3000 {
		var seq uint64
		var rec string
		if _, err := fmt.Sscanf(sc.Text(), "%d %s", &seq, &rec); err == nil {
			acked[seq] = rec
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if len(acked) < 3000 {
		t.Fatalf("child acknowledged only %d records", len(acked))
	}
	l := open(t, dir, Options{})
	defer l.Close()
	got := replayAll(t, l, 0)
	for seq, rec := range acked {
		if got[seq] != rec {
			t.Fatalf("acknowledged record %d = %q after the crash; want %q", seq, got[seq], rec)
		}
	}
	t.Logf("%d acknowledged, %d in the log after SIGKILL", len(acked), len(got))
}

func crashChild(dir string) {
	l, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; ; i++ {
				rec := fmt.Sprintf("g%d-%d", g, i)
				seq, err := l.Append([]byte(rec))
				if err != nil {
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintf(w, "%d %s\n", seq, rec)
				w.Flush()
				mu.Unlock()
			}
		}()
	}
	// Wait to be killed; the parent's end of stdin closing means it
	// will not, and the deadline bounds the wait if neither happens.
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-eof:
	case <-time.After(time.Minute):
	}
	os.Exit(2)
}

func BenchmarkAppendParallel(b *testing.B) {
	l, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	rec := bytes.Repeat([]byte{'x'}, 200)
	b.SetParallelism(50) // many publishers waiting on one fsync, as in a fan-in
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
