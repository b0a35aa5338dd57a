package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/wal"
)

func TestAdminJournalInspectAndSalvage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, err := wal.Open(datadir.Journal(dir), wal.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		if _, err := l.Append([]byte(fmt.Sprintf("record-%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	seg := filepath.Join(datadir.Journal(dir), fmt.Sprintf("%020d.wal", 1))
	b, _ := os.ReadFile(seg)
	const rec = 8 + 9 // header + "record-NN"
	b[4*rec+10] ^= 1  // a payload byte of record 5
	os.WriteFile(seg, b, 0o600)

	out, errOut, code := run(t, "admin", "journal", "inspect", "--data-dir", dir)
	if code != 4 || !strings.Contains(out, fmt.Sprintf("DAMAGED at offset %d", 4*rec)) ||
		!strings.Contains(errOut, "mote admin journal salvage --data-dir "+dir) {
		t.Fatalf("inspect of a damaged journal: exit %d\n%s%s", code, out, errOut)
	}
	if after, _ := os.ReadFile(seg); string(after) != string(b) {
		t.Fatal("inspect changed the segment")
	}

	out, errOut, code = run(t, "admin", "journal", "salvage", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "moved to "+seg+".corrupt") ||
		!strings.Contains(out, fmt.Sprintf("LOST bytes %d-%d", 4*rec, 5*rec)) || !strings.Contains(out, "kept records 1-4") {
		t.Fatalf("salvage: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := run(t, "admin", "journal", "inspect", "--data-dir", dir); code != 0 || strings.Contains(out, "DAMAGED") {
		t.Fatalf("inspect after salvage: exit %d\n%s%s", code, out, errOut)
	}
	l, err = wal.Open(datadir.Journal(dir), wal.Options{NoSync: true})
	if err != nil {
		t.Fatalf("open after salvage: %v", err)
	}
	defer l.Close()
	n := 0
	l.Replay(0, func(uint64, []byte) error { n++; return nil })
	if n != 9 {
		t.Fatalf("replayed %d records after salvage; want 9", n)
	}
	if _, _, code := run(t, "admin", "journal", "inspect", "--data-dir", filepath.Join(dir, "nope")); code != 3 {
		t.Fatalf("inspect of a missing journal: exit %d; want 3", code)
	}
}
