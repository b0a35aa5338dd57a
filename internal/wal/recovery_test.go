package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fill appends n records "rec-1".. and closes the log; it returns the byte
// offset of every record in the first segment.
func fill(t testing.TB, dir string, o Options, n int) []int64 {
	t.Helper()
	l := open(t, dir, o)
	var offs []int64
	off := int64(0)
	for i := 1; i <= n; i++ {
		rec := fmt.Sprintf("rec-%d", i)
		if _, err := l.Append([]byte(rec)); err != nil {
			t.Fatal(err)
		}
		offs = append(offs, off)
		off += int64(8 + len(rec))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return offs
}

func flip(t *testing.T, path string, off int64) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x40
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCorruptMiddleRecordRefusesOpen(t *testing.T) {
	for _, tc := range []struct {
		name  string
		field int64 // byte of the record to flip
	}{
		{"payload", 10},
		{"checksum", 5},
		{"length", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			offs := fill(t, dir, Options{}, 20)
			path := filepath.Join(dir, segName(1))
			damaged := flip(t, path, offs[9]+tc.field) // record 10 of 20

			_, err := Open(dir, Options{})
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Open of a log with a damaged middle record = %v; want a *CorruptError", err)
			}
			if ce.Path != path || ce.Offset != offs[9] {
				t.Fatalf("CorruptError at %s offset %d; want %s offset %d", ce.Path, ce.Offset, path, offs[9])
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprint(offs[9])) {
				t.Fatalf("error %q does not name the file and the offset", err)
			}
			if b, _ := os.ReadFile(path); !bytes.Equal(b, damaged) {
				t.Fatalf("Open changed the damaged file (%d bytes, was %d)", len(b), len(damaged))
			}
		})
	}
}

func TestCorruptNonLastSegmentRefusesOpen(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, Options{SegmentSize: 64}, 40)
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	if len(segs) < 3 {
		t.Fatalf("%d segments; want several", len(segs))
	}
	// The last byte of a segment that others follow: nothing valid after
	// it in that file, but it is not the tail of the log.
	st, _ := os.Stat(segs[1])
	flip(t, segs[1], st.Size()-1)
	_, err := Open(dir, Options{SegmentSize: 64})
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Path != segs[1] {
		t.Fatalf("Open = %v; want a *CorruptError in %s", err, segs[1])
	}
}

func TestSalvageKeepsValidRecords(t *testing.T) {
	dir := t.TempDir()
	offs := fill(t, dir, Options{}, 20)
	path := filepath.Join(dir, segName(1))
	flip(t, path, offs[9]+10)

	rep, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s := rep.Segments[0]; !s.Damaged() || s.Valid() != 19 || len(s.Lost) != 1 || s.Lost[0].Offset != offs[9] {
		t.Fatalf("Inspect = %+v; want one damaged range at %d and 19 valid records", s, offs[9])
	}
	out, err := Salvage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].MovedTo != path+".corrupt" || len(out[0].Kept) != 2 {
		t.Fatalf("Salvage = %+v; want the segment moved aside and two runs kept", out)
	}
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Fatalf("damaged segment not kept aside: %v", err)
	}

	l := open(t, dir, Options{})
	defer l.Close()
	var got []string
	var seqs []uint64
	if err := l.Replay(0, func(seq uint64, rec []byte) error {
		got = append(got, string(rec))
		seqs = append(seqs, seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 19 || got[8] != "rec-9" || got[9] != "rec-11" || got[18] != "rec-20" {
		t.Fatalf("replay after salvage = %v; want rec-1..rec-20 without rec-10", got)
	}
	// Numbers never go down: a consumer skipping what it applied by
	// number does not skip a record after the damage.
	for i, seq := range seqs {
		orig := uint64(i + 1)
		if i >= 9 {
			orig++
		}
		if seq < orig {
			t.Fatalf("record %q renumbered %d, below its number %d", got[i], seq, orig)
		}
	}
	seq, err := l.Append([]byte("after"))
	if err != nil || seq <= seqs[len(seqs)-1] {
		t.Fatalf("Append after salvage = %d, %v; want a number after %d", seq, err, seqs[len(seqs)-1])
	}
}

func TestTornTailIsCountedAndCut(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, Options{}, 5)
	path := filepath.Join(dir, segName(1))
	b, _ := os.ReadFile(path)
	size := int64(len(b))
	// An incomplete last write and the zeroes a file system may leave.
	b = append(b, 40, 0, 0, 0, 1, 2, 3, 4, 'p', 'a', 'r')
	b = append(b, make([]byte, 100)...)
	os.WriteFile(path, b, 0o600)

	l := open(t, dir, Options{})
	defer l.Close()
	if got := l.TornBytes(); got != int64(len(b))-size {
		t.Fatalf("TornBytes = %d; want %d", got, int64(len(b))-size)
	}
	if st, _ := os.Stat(path); st.Size() != size {
		t.Fatalf("segment is %d bytes after open; want the torn tail cut to %d", st.Size(), size)
	}
	if got := replayAll(t, l, 0); len(got) != 5 {
		t.Fatalf("replayed %d; want 5", len(got))
	}
}

// faults fails segment writes or fsyncs while on.
type faults struct{ write, sync atomic.Bool }

func (f *faults) hook(op string) error {
	if (op == "write" && f.write.Load()) || (op == "sync" && f.sync.Load()) {
		return syscall.ENOSPC
	}
	return nil
}

func TestWriteFailureRecovers(t *testing.T) {
	for _, op := range []string{"write", "sync"} {
		t.Run(op, func(t *testing.T) {
			dir := t.TempDir()
			var downs atomic.Int32
			var failures atomic.Int32
			o := Options{RetryMin: time.Millisecond, RetryMax: 20 * time.Millisecond,
				OnWriteError: func(err error, first bool, _ time.Duration) {
					failures.Add(1)
					if !errors.Is(err, ErrStorage) {
						t.Errorf("OnWriteError(%v): not ErrStorage", err)
					}
				},
				OnRecovered: func(time.Duration) { downs.Add(1) },
			}
			l := open(t, dir, o)
			defer l.Close()
			f := &faults{}
			l.SetFault(f.hook)
			acked := map[uint64]string{}
			appendOK := func(rec string) {
				t.Helper()
				seq, err := l.Append([]byte(rec))
				if err != nil {
					t.Fatalf("Append(%s) = %v", rec, err)
				}
				acked[seq] = rec
			}
			appendOK("before-1")
			appendOK("before-2")

			if op == "write" {
				f.write.Store(true)
			} else {
				f.sync.Store(true)
			}
			big := strings.Repeat("x", 300<<10) // more than the write buffer: a partial write reaches the file
			if _, err := l.Append([]byte(big)); !errors.Is(err, ErrStorage) {
				t.Fatalf("Append on a full disk = %v; want ErrStorage", err)
			}
			if l.Err() == nil {
				t.Fatal("Err() = nil while writes fail")
			}
			if _, err := l.Append([]byte("refused")); !errors.Is(err, ErrStorage) {
				t.Fatalf("Append while failing = %v; want ErrStorage", err)
			}
			waitFor(t, "a failed retry", func() bool { return failures.Load() >= 2 })

			f.write.Store(false)
			f.sync.Store(false)
			waitFor(t, "the log to write again", func() bool { return l.Err() == nil })
			if downs.Load() != 1 {
				t.Fatalf("OnRecovered called %d times; want 1", downs.Load())
			}
			appendOK("after-1")
			appendOK("after-2")
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}

			l2 := open(t, dir, Options{})
			defer l2.Close()
			if l2.TornBytes() != 0 {
				t.Fatalf("reopen cut %d torn bytes: the failed write was not cut back", l2.TornBytes())
			}
			got := replayAll(t, l2, 0)
			if len(got) != len(acked) {
				t.Fatalf("log holds %v after recovery; want exactly the acknowledged %v", got, acked)
			}
			for seq, rec := range acked {
				if got[seq] != rec {
					t.Fatalf("record %d = %q; want %q", seq, got[seq], rec)
				}
			}
		})
	}
}

func TestCheckpointSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	for i := 0; i < 3; i++ {
		l.Append([]byte("r"))
	}
	if err := l.SetCheckpoint(2); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := os.Stat(filepath.Join(dir, checkpointFile+".tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary checkpoint file left: %v", err)
	}
	l = open(t, dir, Options{})
	defer l.Close()
	if cp, err := l.Checkpoint(); cp != 2 || err != nil {
		t.Fatalf("Checkpoint after reopen = %d, %v; want 2", cp, err)
	}
}

func FuzzSegment(f *testing.F) {
	dir := f.TempDir()
	offs := fill(f, dir, Options{}, 4)
	good, _ := os.ReadFile(filepath.Join(dir, segName(1)))
	f.Add(good)
	bad := bytes.Clone(good)
	bad[offs[1]+9] ^= 1
	f.Add(bad)
	f.Add(append(bytes.Clone(good), 9, 0, 0, 0, 1))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), segName(1))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		info, err := scanSegment(path, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		runs, lost := parseRuns(b)
		// The scan's good prefix is the first run; runs and damage cover
		// the file exactly, in order.
		if info.Records > 0 && (runs[0].Offset != 0 || runs[0].End != info.Good || runs[0].Records != info.Records) {
			t.Fatalf("scan good prefix %d records/%d bytes; first run %+v", info.Records, info.Good, runs[0])
		}
		if (info.Bad == "") != (len(lost) == 0) {
			t.Fatalf("scan says bad %q, parseRuns lost %v", info.Bad, lost)
		}
		covered := int64(0)
		for _, r := range runs {
			covered += r.End - r.Offset
		}
		for _, r := range lost {
			covered += r.End - r.Offset
		}
		if covered != int64(len(b)) {
			t.Fatalf("runs %v and lost %v cover %d of %d bytes", runs, lost, covered, len(b))
		}
	})
}

// Garbage full of plausible record lengths cannot make the search for a
// valid record after the damage run for long: it gives up, and Open
// treats the damage as corruption (never cuts it off).
func TestScanForValidRecordIsBounded(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, Options{}, 3)
	path := filepath.Join(dir, segName(1))
	b, _ := os.ReadFile(path)
	good := len(b)
	b = append(b, bytes.Repeat([]byte{0, 0, 0x0f, 0}, 1<<19)...) // 2 MiB of ~1 MB lengths
	os.WriteFile(path, b, 0o600)

	start := time.Now()
	_, err := Open(dir, Options{})
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Offset != int64(good) || !strings.Contains(ce.Reason, "too many candidate") {
		t.Fatalf("Open = %v; want a *CorruptError at %d that gave up searching", err, good)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Open took %v", d)
	}
	if st, _ := os.Stat(path); st.Size() != int64(len(b)) {
		t.Fatal("Open cut off what it could not tell from a torn tail")
	}
}
