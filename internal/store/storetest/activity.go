package storetest

import (
	"testing"
	"time"

	"github.com/moteiot/mote/internal/store"
)

func testActivity(t *testing.T, open func(t *testing.T) store.Store) {
	s, ctx := open(t), t.Context()
	_, err := s.Things().Create(ctx, store.Thing{Name: "a", CreatedAt: base})
	must(t, "Create a", err)
	t1, t2 := base.Add(time.Minute).Truncate(time.Millisecond), base.Add(2*time.Minute).Truncate(time.Millisecond)
	must(t, "RecordActivity", s.Things().RecordActivity(ctx, []store.Activity{
		{Thing: "a", LastSeen: t2, PublishDenied: 2, LastDeniedTopic: "x/1", LastDeniedAt: t2},
		{Thing: "nosuch", LastSeen: t2, PublishDenied: 1, LastDeniedTopic: "x"},
		{Thing: "a", LastSeen: t1, InvalidTelemetry: 3, LastInvalidAt: t1}, // older: LastSeen stays t2
	}))
	th, err := s.Things().Get(ctx, "a")
	must(t, "Get a", err)
	eqTimePtr(t, "LastSeen", th.LastSeen, &t2)
	eq(t, "PublishDenied", th.Stats.PublishDenied, int64(2))
	eq(t, "InvalidTelemetry", th.Stats.InvalidTelemetry, int64(3))
	eq(t, "LastDeniedTopic", th.Stats.LastDeniedTopic, "x/1")
	eqTimePtr(t, "LastDeniedAt", th.Stats.LastDeniedAt, &t2)
	eqTimePtr(t, "LastInvalidAt", th.Stats.LastInvalidAt, &t1)

	must(t, "RecordActivity again", s.Things().RecordActivity(ctx, []store.Activity{{Thing: "a", PublishDenied: 1, LastDeniedTopic: "x/2", LastDeniedAt: t2}}))
	th, err = s.Things().Get(ctx, "a")
	must(t, "Get a", err)
	eq(t, "PublishDenied added", th.Stats.PublishDenied, int64(3))
	eq(t, "LastDeniedTopic replaced", th.Stats.LastDeniedTopic, "x/2")
	eq(t, "InvalidTelemetry kept", th.Stats.InvalidTelemetry, int64(3))

	// Stats go with the thing.
	must(t, "Delete a", s.Things().Delete(ctx, "a"))
	_, err = s.Things().Create(ctx, store.Thing{Name: "a"})
	must(t, "Create a again", err)
	th, err = s.Things().Get(ctx, "a")
	must(t, "Get a", err)
	eq(t, "PublishDenied of a new thing", th.Stats.PublishDenied, int64(0))
}

func testThingSort(t *testing.T, open func(t *testing.T) store.Store) {
	s, ctx := open(t), t.Context()
	for i, n := range []string{"c", "a", "d", "b"} {
		_, err := s.Things().Create(ctx, store.Thing{Name: n, CreatedAt: base.Add(time.Duration(i) * time.Second), Enabled: n != "d"})
		must(t, "Create "+n, err)
	}
	must(t, "RecordPresence", s.Things().RecordPresence(ctx, []store.Presence{
		{Thing: "b", Connected: true, At: base.Add(time.Hour)}, {Thing: "d", Connected: false, At: base.Add(2 * time.Hour)},
	}))
	for _, tc := range []struct {
		sort string
		want []string
	}{
		{"", []string{"a", "b", "c", "d"}},
		{"-name", []string{"d", "c", "b", "a"}},
		{"createdAt", []string{"c", "a", "d", "b"}},
		{"-createdAt", []string{"b", "d", "a", "c"}},
		{"lastSeen", []string{"a", "c", "b", "d"}}, // never seen first, by name
		{"-lastSeen", []string{"d", "b", "c", "a"}},
	} {
		// Pages of one walk the whole order through the cursor.
		var got []string
		after := ""
		for range 10 {
			list, err := s.Things().List(ctx, store.ThingFilter{Sort: tc.sort, After: after, Limit: 1})
			must(t, "List sort="+tc.sort, err)
			if len(list) == 0 {
				break
			}
			got = append(got, list[0].Name)
			after = store.ThingCursor(tc.sort, list[0])
		}
		eq(t, "sort="+tc.sort, len(got), len(tc.want))
		for i := range tc.want {
			if i < len(got) {
				eq(t, "sort="+tc.sort+" position", got[i], tc.want[i])
			}
		}
	}
	if _, err := s.Things().List(ctx, store.ThingFilter{Sort: "nosuch"}); err == nil {
		t.Error("List sort=nosuch: no error")
	}
	n, err := s.Things().Total(ctx, store.ThingFilter{NamePrefix: "a"})
	must(t, "Total", err)
	eq(t, "Total prefix a", n, 1)
	c, err := s.Things().Counts(ctx)
	must(t, "Counts", err)
	eq(t, "Counts", c, store.ThingCounts{Total: 4, Connected: 1, Disabled: 1})
}
