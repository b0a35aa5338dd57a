package fleetindex

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/fleetquery"
)

// benchIndex is an index of n things as the loader builds them (the
// store is not involved: the figures are those of the query, which runs
// in memory whatever the backend). A tenth are thermo sensors in
// Amsterdam, half are connected, firmware versions cycle 1.0.0..1.9.9.
func benchIndex(b testing.TB, n int) *Index {
	b.Helper()
	x := New(Options{})
	sites := []string{"ams", "rtm", "utr", "ehv", "gro", "den", "haa", "nij", "zwo", "lei"}
	for i := range n {
		e := &entry{created: time.Unix(int64(i), 0), versions: map[string]int64{"": 1}}
		e.doc = fleetquery.Doc{
			Name:       fmt.Sprintf("thing-%06d", i),
			Type:       []string{"thermo", "meter", "gate"}[i%3],
			Attributes: map[string]string{"site": sites[i%10], "floor": fmt.Sprint(i % 7), "serial": fmt.Sprint(i)},
			Tags:       []string{"fleet"},
			Enabled:    true,
			Connected:  i%2 == 0,
			LastSeen:   time.Now().Add(-time.Duration(i) * time.Second),
			Shadows: map[string]*fleetquery.Shadow{"": {Reported: map[string]any{
				"firmware": fmt.Sprintf("1.%d.%d", i%10, (i/10)%10), "battery": float64(i % 100)}}},
			Telemetry: map[string]any{"temp": float64(i%30) + 0.5},
		}
		x.docs[e.doc.Name] = e
		x.post(e)
	}
	x.ready.Store(true)
	return x
}

const benchQuery = "attributes.site = 'ams' AND type = 'thermo' AND connected = true AND version(shadow.reported.firmware) < '1.5'"

// BenchmarkFleetQuery100k: the query over 100,000 things: one
// page of the list (with the total), a count, and Match (every name).
func BenchmarkFleetQuery100k(b *testing.B) {
	x := benchIndex(b, 100_000)
	ctx := context.Background()
	n, err := x.Count(ctx, benchQuery)
	if err != nil || n == 0 {
		b.Fatalf("Count = %d, %v; want some", n, err)
	}
	x.ordered() // the name order is built once, then kept
	b.Run("list", func(b *testing.B) {
		defer measure(b)()
		for b.Loop() {
			p, err := x.List(ctx, benchQuery, "", "", 100)
			if err != nil || p.Total != n {
				b.Fatalf("List = %d, %v", p.Total, err)
			}
		}
	})
	b.Run("count", func(b *testing.B) {
		defer measure(b)()
		for b.Loop() {
			if _, err := x.Count(ctx, benchQuery); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("match", func(b *testing.B) {
		defer measure(b)()
		for b.Loop() {
			if _, err := x.Match(ctx, benchQuery); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("list-lastSeen", func(b *testing.B) {
		defer measure(b)()
		for b.Loop() {
			if _, err := x.List(ctx, "connected = true", "-lastSeen", "", 100); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// measure reports the CPU time per operation (cpu-ms/op) besides the
// wall time: on a shared machine the wall time mostly measures the wait
// for a core.
func measure(b *testing.B) func() {
	runtime.GC()
	cpu := cpuTime()
	return func() {
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
	}
}

// TestNarrowedSameAsScan: answers through the postings are those of a
// scan of every thing, for queries that can and cannot use them.
func TestNarrowedSameAsScan(t *testing.T) {
	x := benchIndex(t, 3000)
	ctx := context.Background()
	for _, q := range []string{
		benchQuery,
		"type IN ('meter', 'gate') AND attributes.floor = '3'",
		"connected = false AND tags = 'fleet' AND name LIKE 'thing-0001*'",
		"attributes.site = 'nowhere'",
		"type = 'thermo' OR connected = true",
		"telemetry.temp > 20",
	} {
		parsed, err := fleetquery.Parse(q, fleetquery.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, e := range x.ordered() {
			if parsed.Match(&e.doc, x.o.Now()) {
				want = append(want, e.doc.Name)
			}
		}
		got, err := x.Match(ctx, q)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Match(%q) = %d names (%v); a scan finds %d", q, len(got), err, len(want))
		}
		if n, err := x.Count(ctx, q); err != nil || n != len(want) {
			t.Errorf("Count(%q) = %d, %v; want %d", q, n, err, len(want))
		}
		p, err := x.List(ctx, q, "", "", 10)
		if err != nil || p.Total != len(want) || len(want) > 0 && p.Names[0] != want[0] {
			t.Errorf("List(%q) = %+v, %v; want total %d from %v", q, p, err, len(want), want[:min(1, len(want))])
		}
	}
}
