package daemon_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/cli"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/daemon"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/ingest"
	"github.com/moteiot/mote/internal/telemetry"
)

// journalWithBacklog stops s and leaves n acknowledged telemetry messages
// of thing "dev" ({"n": 1..n}) in its journal that the telemetry store has
// not applied, as a crash right after their PUBACKs would. It returns the
// journal's segment and the byte offset of every record.
func journalWithBacklog(t *testing.T, s *daemontest.Server, n int) (string, []int64) {
	t.Helper()
	if err := s.Daemon.Close(); err != nil {
		t.Fatal(err)
	}
	j, err := ingest.Open(ingest.Options{Dir: datadir.Journal(s.Dir), NoSync: true,
		Applied: func() uint64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Start(ingest.Funcs{Apply: func(core.Message) {}}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if _, err := j.Append(core.Message{Topic: "things/dev/telemetry", Thing: "dev", ClientID: "dev", QoS: 1,
			Payload: []byte(fmt.Sprintf(`{"n":%d}`, i)), Received: time.Now(), Protocol: "mqtt"}); err != nil {
			t.Fatal(err)
		}
	}
	j.Drain() // no Close: no checkpoint, as after a crash
	segs, _ := filepath.Glob(filepath.Join(datadir.Journal(s.Dir), "*.wal"))
	if len(segs) != 1 {
		t.Fatalf("journal segments %v; want one", segs)
	}
	b, _ := os.ReadFile(segs[0])
	var offs []int64
	for off := int64(0); off < int64(len(b)); {
		offs = append(offs, off)
		off += 8 + int64(binary.LittleEndian.Uint32(b[off:]))
	}
	if len(offs) != n {
		t.Fatalf("%d records in the segment; want %d", len(offs), n)
	}
	return segs[0], offs
}

func storedN(t *testing.T, s *daemontest.Server) map[int]int {
	t.Helper()
	if err := s.TelemetryWriter().Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	points, _, err := s.Telemetry().Range(context.Background(), telemetry.RangeQuery{Things: []string{"dev"}, Keys: []string{"n"},
		From: time.Now().Add(-time.Hour).UnixMilli(), To: time.Now().Add(time.Minute).UnixMilli(), Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]int{}
	for _, p := range points {
		got[int(p.Value.Float())]++
	}
	return got
}

func metric(t *testing.T, s *daemontest.Server, name string) string {
	t.Helper()
	resp, err := http.Get(s.API + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

// One flipped byte in a record in the middle of the journal: the server
// refuses to start, naming the file and offset, and leaves the file as it
// is; `mote admin journal salvage` keeps the valid records, and the next
// start stores every one of them.
func TestCorruptJournalRefusesStartAndSalvageKeepsData(t *testing.T) {
	s := daemontest.Start(t)
	s.Device(t, "dev")
	const n = 300
	seg, offs := journalWithBacklog(t, s, n)
	b, _ := os.ReadFile(seg)
	b[offs[149]+12] ^= 0x08 // a payload byte of message 150
	os.WriteFile(seg, b, 0o600)

	d := daemon.New(s.Config, daemontest.Logger(t))
	err := d.Start(context.Background())
	if err == nil {
		d.Close()
		t.Fatal("the server started on a journal with a damaged record in the middle")
	}
	for _, want := range []string{seg, fmt.Sprintf("offset %d", offs[149]), "mote admin journal salvage --data-dir " + s.Dir} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("start error %q does not contain %q", err, want)
		}
	}
	if after, _ := os.ReadFile(seg); string(after) != string(b) {
		t.Fatal("the refused start changed the journal")
	}

	var out, errOut strings.Builder
	if code := cli.Main([]string{"admin", "journal", "salvage", "--data-dir", s.Dir}, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("salvage: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	s.Restart(t)
	got := storedN(t, s)
	for i := 1; i <= n; i++ {
		if i != 150 && got[i] != 1 {
			t.Fatalf("message %d stored %d times after salvage; want once (stored: %d messages)", i, got[i], len(got))
		}
	}
	if v := metric(t, s, "mote_ingest_replayed_total"); v != fmt.Sprint(n-1) {
		t.Fatalf("mote_ingest_replayed_total = %q; want %d", v, n-1)
	}
}

// An incomplete last write is cut off at start, counted, and every
// complete record before it is stored.
func TestTornJournalTailIsCutAndCounted(t *testing.T) {
	s := daemontest.Start(t)
	s.Device(t, "dev")
	const n = 50
	seg, _ := journalWithBacklog(t, s, n)
	f, _ := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{200, 0, 0, 0, 1, 2, 3, 4, '{', '"', 'n'}) // a write cut short
	f.Close()

	s.Restart(t)
	if got := storedN(t, s); len(got) != n {
		t.Fatalf("stored %d messages after a torn tail; want %d", len(got), n)
	}
	if v := metric(t, s, "mote_ingest_torn_tail_bytes_total"); v != "11" {
		t.Fatalf("mote_ingest_torn_tail_bytes_total = %q; want 11", v)
	}
}
