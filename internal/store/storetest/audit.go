package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

func testAudit(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	as := s.Audit()

	// An empty log lists nothing.
	if got, err := as.List(ctx, store.AuditFilter{}); err != nil || len(got) != 0 {
		t.Fatalf("List(empty) = %v, %v; want nothing", got, err)
	}
	var batch []store.AuditEntry
	for i := range 30 {
		e := store.AuditEntry{
			ID:         fmt.Sprintf("%016x", i+1),
			Time:       base.Add(time.Duration(i) * time.Minute),
			ActorKind:  "token",
			ActorName:  []string{"alice", "bob"}[i%2],
			ActorID:    fmt.Sprintf("tok%d", i%2),
			Action:     []string{"thing.create", "thing.update", "policy.replace"}[i%3],
			TargetKind: "thing",
			TargetName: fmt.Sprintf("t%d", i%5),
			Status:     200 + i%2,
			Source:     "127.0.0.1",
			RequestID:  fmt.Sprintf("req-%d", i),
		}
		if i == 0 {
			e.Before = []byte(`{"a":1}`)
			e.After = []byte(`{"a":2}`)
		}
		if i == 1 {
			e.Omitted = true
		}
		batch = append(batch, e)
	}
	if err := as.Append(ctx, batch[:10]); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := as.Append(ctx, batch[10:]); err != nil {
		t.Fatalf("Append: %v", err)
	}

	// Round trip, newest first.
	all, err := as.List(ctx, store.AuditFilter{Limit: 1000})
	if err != nil || len(all) != 30 {
		t.Fatalf("List = %d entries, %v; want 30", len(all), err)
	}
	if all[0].ID != batch[29].ID || all[29].ID != batch[0].ID {
		t.Errorf("List order: first %s last %s; want newest (%s) first", all[0].ID, all[29].ID, batch[29].ID)
	}
	first := all[29]
	want := batch[0]
	want.Time = ms(want.Time)
	if first.ID != want.ID || !first.Time.Equal(want.Time) || first.Time.Location() != time.UTC || first.ActorKind != want.ActorKind ||
		first.ActorName != want.ActorName || first.ActorID != want.ActorID || first.Action != want.Action || first.TargetKind != want.TargetKind ||
		first.TargetName != want.TargetName || first.Status != want.Status || first.Source != want.Source ||
		first.RequestID != want.RequestID || string(first.Before) != `{"a":1}` || string(first.After) != `{"a":2}` || first.Omitted {
		t.Errorf("round trip = %+v; want %+v", first, want)
	}
	if all[28].Before != nil || all[28].After != nil || !all[28].Omitted {
		t.Errorf("entry 1: Before %q After %q Omitted %v; want nil, nil, true", all[28].Before, all[28].After, all[28].Omitted)
	}

	// An ID appended twice is a conflict, and the batch holding it is not kept.
	dup := []store.AuditEntry{{ID: "ffffffffffffffff", Time: base, ActorKind: "system", Action: "x"}, batch[3]}
	if err := as.Append(ctx, dup); core.KindOf(err) != core.KindConflict {
		t.Errorf("Append(duplicate id) = %v; want a conflict", err)
	}
	if got, _ := as.List(ctx, store.AuditFilter{Limit: 1000}); len(got) != 30 {
		t.Errorf("after a refused batch: %d entries; want 30 (all or nothing)", len(got))
	}

	count := func(f store.AuditFilter) int {
		t.Helper()
		f.Limit = 1000
		got, err := as.List(ctx, f)
		if err != nil {
			t.Fatalf("List(%+v): %v", f, err)
		}
		return len(got)
	}
	for _, c := range []struct {
		f    store.AuditFilter
		want int
	}{
		{store.AuditFilter{Actor: "alice"}, 15},
		{store.AuditFilter{Action: "thing.create"}, 10},
		{store.AuditFilter{Action: "thing.*"}, 20},
		{store.AuditFilter{Action: "thing."}, 0},
		{store.AuditFilter{TargetKind: "thing", TargetName: "t1"}, 6},
		{store.AuditFilter{TargetName: "t1", Actor: "bob"}, 3},
		{store.AuditFilter{Since: base.Add(10 * time.Minute)}, 20},
		{store.AuditFilter{Until: base.Add(10 * time.Minute)}, 10},
		{store.AuditFilter{Since: base.Add(5 * time.Minute), Until: base.Add(7 * time.Minute)}, 2},
		{store.AuditFilter{After: batch[5].ID}, 5},
	} {
		if got := count(c.f); got != c.want {
			t.Errorf("List(%+v) = %d entries; want %d", c.f, got, c.want)
		}
	}

	// Pages of 7 walk the whole log once, newest first.
	var seen []string
	after := ""
	for {
		page, err := as.List(ctx, store.AuditFilter{After: after, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			seen = append(seen, e.ID)
		}
		if len(page) < 7 {
			break
		}
		after = page[len(page)-1].ID
	}
	if len(seen) != 30 || seen[0] != batch[29].ID || seen[29] != batch[0].ID {
		t.Errorf("paging saw %d entries (%v); want 30 newest first", len(seen), seen)
	}

	// Prune removes by age only.
	n, err := as.Prune(ctx, base.Add(20*time.Minute))
	if err != nil || n != 20 {
		t.Errorf("Prune = %d, %v; want 20", n, err)
	}
	if got := count(store.AuditFilter{}); got != 10 {
		t.Errorf("after Prune: %d entries; want 10", got)
	}
}
