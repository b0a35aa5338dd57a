package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

func alarmIDs(list []store.Alarm) []string {
	ids := make([]string, len(list))
	for i, a := range list {
		ids[i] = a.ID
	}
	return ids
}

func testAlarms(t *testing.T, open func(t *testing.T) store.Store) {
	newStore := func(t *testing.T, things ...string) store.Store {
		s := open(t)
		for _, n := range things {
			_, err := s.Things().Create(t.Context(), store.Thing{Name: n})
			must(t, "create thing "+n, err)
		}
		return s
	}

	t.Run("RaiseRepeatAckClear", func(t *testing.T) {
		s, ctx := newStore(t, "dev"), t.Context()
		a, created, err := s.Alarms().Raise(ctx, store.Alarm{ID: "alm_1", Thing: "dev", Type: "overheat",
			Severity: store.SeverityMajor, Details: []byte(`{"value":81}`), LastAt: base}, 0)
		must(t, "raise", err)
		eq(t, "created", created, true)
		eq(t, "ID", a.ID, "alm_1")
		eq(t, "Status", a.Status, store.AlarmActive)
		eq(t, "Count", a.Count, int64(1))
		eqTime(t, "CreatedAt", a.CreatedAt, ms(base))
		eqTime(t, "LastAt", a.LastAt, ms(base))
		eqJSON(t, "Details", a.Details, []byte(`{"value":81}`))

		// A repeat bumps the open alarm, whatever id it brings.
		a, created, err = s.Alarms().Raise(ctx, store.Alarm{ID: "alm_2", Thing: "dev", Type: "overheat",
			Severity: store.SeverityCritical, Details: []byte(`{"value":95}`), LastAt: base.Add(time.Minute)}, 0)
		must(t, "raise again", err)
		eq(t, "created", created, false)
		eq(t, "ID", a.ID, "alm_1")
		eq(t, "Count", a.Count, int64(2))
		eq(t, "Severity", a.Severity, store.SeverityCritical)
		eqTime(t, "LastAt", a.LastAt, ms(base.Add(time.Minute)))
		eqTime(t, "CreatedAt", a.CreatedAt, ms(base))
		eqJSON(t, "Details", a.Details, []byte(`{"value":95}`))
		_, err = s.Alarms().Get(ctx, "alm_2")
		wantNotFound(t, "get alm_2", err, "alarm", "alm_2")

		// LastAt never moves back.
		a, _, err = s.Alarms().Raise(ctx, store.Alarm{ID: "alm_3", Thing: "dev", Type: "overheat", Severity: store.SeverityMajor, LastAt: base}, 0)
		must(t, "raise late", err)
		eqTime(t, "LastAt after a late raise", a.LastAt, ms(base.Add(time.Minute)))

		got, err := s.Alarms().Open(ctx, "dev", "overheat")
		must(t, "open", err)
		eq(t, "Open.ID", got.ID, "alm_1")

		acked, err := s.Alarms().Ack(ctx, "alm_1", base.Add(2*time.Minute))
		must(t, "ack", err)
		eq(t, "Status", acked.Status, store.AlarmAcknowledged)
		eqTimePtr(t, "AckedAt", acked.AckedAt, msPtr(base.Add(2*time.Minute)))
		_, err = s.Alarms().Ack(ctx, "alm_1", base)
		wantConflict(t, "ack twice", err, "acknowledged")

		// An acknowledged alarm is still open: a repeat bumps it.
		a, created, err = s.Alarms().Raise(ctx, store.Alarm{ID: "alm_4", Thing: "dev", Type: "overheat", Severity: store.SeverityMajor}, 0)
		must(t, "raise acknowledged", err)
		eq(t, "created", created, false)
		eq(t, "Status", a.Status, store.AlarmAcknowledged)

		cleared, err := s.Alarms().Clear(ctx, "alm_1", base.Add(3*time.Minute))
		must(t, "clear", err)
		eq(t, "Status", cleared.Status, store.AlarmCleared)
		eqTimePtr(t, "ClearedAt", cleared.ClearedAt, msPtr(base.Add(3*time.Minute)))
		c2, err := s.Alarms().Clear(ctx, "alm_1", base)
		wantConflict(t, "clear twice", err, "cleared")
		eq(t, "Status with the conflict", c2.Status, store.AlarmCleared)
		_, err = s.Alarms().Open(ctx, "dev", "overheat")
		wantKind(t, "open after clear", err, core.KindNotFound)

		// After a clear, a new raise is a new alarm; the old one is history.
		a, created, err = s.Alarms().Raise(ctx, store.Alarm{ID: "alm_5", Thing: "dev", Type: "overheat", Severity: store.SeverityMajor}, 0)
		must(t, "raise after clear", err)
		eq(t, "created", created, true)
		eq(t, "ID", a.ID, "alm_5")
		list, err := s.Alarms().List(ctx, store.AlarmFilter{Thing: "dev"})
		must(t, "list", err)
		eqList(t, "history", alarmIDs(list), []string{"alm_5", "alm_1"})
	})

	t.Run("ClearWithoutAck", func(t *testing.T) {
		s, ctx := newStore(t, "dev"), t.Context()
		_, _, err := s.Alarms().Raise(ctx, store.Alarm{ID: "a1", Thing: "dev", Type: "silent", Severity: store.SeverityWarning}, 0)
		must(t, "raise", err)
		a, err := s.Alarms().Clear(ctx, "a1", time.Time{})
		must(t, "clear", err)
		eq(t, "Status", a.Status, store.AlarmCleared)
		if a.AckedAt != nil || a.ClearedAt == nil {
			t.Errorf("AckedAt %v ClearedAt %v; want nil and set", a.AckedAt, a.ClearedAt)
		}
		_, err = s.Alarms().Ack(ctx, "a1", time.Time{})
		wantConflict(t, "ack cleared", err, "cleared")
		_, err = s.Alarms().Ack(ctx, "nope", time.Time{})
		wantNotFound(t, "ack missing", err, "alarm", "nope")
	})

	t.Run("MissingThingAndCascade", func(t *testing.T) {
		s, ctx := newStore(t, "dev"), t.Context()
		_, _, err := s.Alarms().Raise(ctx, store.Alarm{ID: "a1", Thing: "ghost", Type: "x", Severity: store.SeverityMinor}, 0)
		wantNotFound(t, "raise for a missing thing", err, "thing", "ghost")
		_, _, err = s.Alarms().Raise(ctx, store.Alarm{ID: "a2", Thing: "dev", Type: "x", Severity: store.SeverityMinor}, 0)
		must(t, "raise", err)
		must(t, "delete thing", s.Things().Delete(ctx, "dev"))
		_, err = s.Alarms().Get(ctx, "a2")
		wantNotFound(t, "get after the thing was deleted", err, "alarm", "a2")
	})

	t.Run("MaxOpen", func(t *testing.T) {
		s, ctx := newStore(t, "a", "b"), t.Context()
		for i, th := range []string{"a", "b"} {
			_, _, err := s.Alarms().Raise(ctx, store.Alarm{ID: fmt.Sprint("x", i), Thing: th, Type: "t", Severity: store.SeverityMinor}, 2)
			must(t, "raise", err)
		}
		_, _, err := s.Alarms().Raise(ctx, store.Alarm{ID: "x3", Thing: "a", Type: "u", Severity: store.SeverityMinor}, 2)
		wantKind(t, "raise over the limit", err, core.KindQuota)
		// A repeat of an open alarm is not a new one.
		_, _, err = s.Alarms().Raise(ctx, store.Alarm{ID: "x4", Thing: "a", Type: "t", Severity: store.SeverityMinor}, 2)
		must(t, "repeat at the limit", err)
		n, err := s.Alarms().CountOpen(ctx)
		must(t, "count", err)
		eq(t, "CountOpen", n, 2)
	})

	t.Run("ListFilterAndPages", func(t *testing.T) {
		s, ctx := newStore(t, "a", "b"), t.Context()
		raise := func(id, thing, typ, sev string) {
			_, _, err := s.Alarms().Raise(ctx, store.Alarm{ID: id, Thing: thing, Type: typ, Severity: sev}, 0)
			must(t, "raise "+id, err)
		}
		raise("1", "a", "t1", store.SeverityMajor)
		raise("2", "b", "t1", store.SeverityMinor)
		raise("3", "a", "t2", store.SeverityMinor)
		raise("4", "b", "t2", store.SeverityCritical)
		_, err := s.Alarms().Ack(ctx, "2", time.Time{})
		must(t, "ack", err)
		_, err = s.Alarms().Clear(ctx, "3", time.Time{})
		must(t, "clear", err)
		for _, c := range []struct {
			f    store.AlarmFilter
			want []string
		}{
			{store.AlarmFilter{}, []string{"4", "3", "2", "1"}},
			{store.AlarmFilter{Status: store.AlarmActive}, []string{"4", "1"}},
			{store.AlarmFilter{Status: "open"}, []string{"4", "2", "1"}},
			{store.AlarmFilter{Status: store.AlarmCleared}, []string{"3"}},
			{store.AlarmFilter{Thing: "a"}, []string{"3", "1"}},
			{store.AlarmFilter{Severity: store.SeverityMinor}, []string{"3", "2"}},
			{store.AlarmFilter{Type: "t2", Thing: "b"}, []string{"4"}},
			{store.AlarmFilter{Limit: 2}, []string{"4", "3"}},
			{store.AlarmFilter{Before: "3", Limit: 2}, []string{"2", "1"}},
		} {
			list, err := s.Alarms().List(ctx, c.f)
			must(t, "list", err)
			eqList(t, fmt.Sprintf("List(%+v)", c.f), alarmIDs(list), c.want)
		}
	})

	t.Run("ApplyInOneTransaction", func(t *testing.T) {
		s, ctx := newStore(t, "a", "b"), t.Context()
		raise := func(id, thing, typ string, at time.Time) store.AlarmOp {
			return store.AlarmOp{Raise: &store.Alarm{ID: id, Thing: thing, Type: typ, Severity: store.SeverityMinor, LastAt: at}}
		}
		res, err := s.Alarms().Apply(ctx, []store.AlarmOp{
			raise("p1", "a", "t", base),                                   // new
			raise("p2", "a", "t", base.Add(time.Second)),                  // repeat of p1
			{Thing: "a", Type: "t", At: base.Add(2 * time.Second)},        // clear p1
			{Thing: "a", Type: "t"},                                       // nothing open: NotFound
			raise("p3", "a", "t", base.Add(3*time.Second)),                // a new episode
			raise("p4", "ghost", "t", base),                               // missing thing
			raise("p5", "b", "t", base),                                   // new: the 2nd open
			raise("p6", "b", "u", base),                                   // over maxOpen 2
			{Raise: &store.Alarm{ID: "p7", Thing: "b", Type: "bad type"}}, // invalid
		}, 2)
		must(t, "apply", err)
		eq(t, "results", len(res), 9)
		must(t, "op 0", res[0].Err)
		eq(t, "op 0 created", res[0].Created, true)
		must(t, "op 1", res[1].Err)
		eq(t, "op 1 created", res[1].Created, false)
		eq(t, "op 1 Count", res[1].Alarm.Count, int64(2))
		must(t, "op 2", res[2].Err)
		eq(t, "op 2 Status", res[2].Alarm.Status, store.AlarmCleared)
		eq(t, "op 2 ID", res[2].Alarm.ID, "p1")
		wantKind(t, "op 3", res[3].Err, core.KindNotFound)
		must(t, "op 4", res[4].Err)
		eq(t, "op 4 ID", res[4].Alarm.ID, "p3")
		wantNotFound(t, "op 5", res[5].Err, "thing", "ghost")
		must(t, "op 6", res[6].Err)
		wantKind(t, "op 7", res[7].Err, core.KindQuota)
		if res[8].Err == nil {
			t.Errorf("op 8 (an invalid type): no error")
		}
		list, err := s.Alarms().List(ctx, store.AlarmFilter{})
		must(t, "list", err)
		eqList(t, "stored", alarmIDs(list), []string{"p5", "p3", "p1"})
		empty, err := s.Alarms().Apply(ctx, nil, 0)
		must(t, "apply nothing", err)
		eq(t, "results of nothing", len(empty), 0)
	})

	t.Run("ConcurrentRaisesMakeOneAlarm", func(t *testing.T) {
		s, ctx := newStore(t, "dev"), t.Context()
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, err := s.Alarms().Raise(ctx, store.Alarm{ID: fmt.Sprint("c", i), Thing: "dev", Type: "t", Severity: store.SeverityMinor}, 0)
				if err != nil {
					t.Errorf("raise %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		a, err := s.Alarms().Open(ctx, "dev", "t")
		must(t, "open", err)
		eq(t, "Count", a.Count, int64(8))
	})
}

func testAnalytics(t *testing.T, open func(t *testing.T) store.Store) {
	s, ctx := open(t), t.Context()
	_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
	must(t, "create thing", err)
	r, err := s.Analytics().CreateRule(ctx, store.AnalyticsRule{Name: "hot", Kind: "threshold", ThingType: "sensor",
		Config: []byte(`{"key":"t","above":80}`), Enabled: true, CreatedAt: base})
	must(t, "create rule", err)
	eq(t, "Kind", r.Kind, "threshold")
	eq(t, "ThingType", r.ThingType, "sensor")
	eq(t, "Group", r.Group, "")
	eqJSON(t, "Config", r.Config, []byte(`{"key":"t","above":80}`))
	eqTime(t, "CreatedAt", r.CreatedAt, ms(base))
	_, err = s.Analytics().CreateRule(ctx, store.AnalyticsRule{Name: "hot", Kind: "threshold"})
	wantConflict(t, "create twice", err, "hot")
	_, err = s.Analytics().CreateRule(ctx, store.AnalyticsRule{Name: "calm", Kind: "silence", Group: "g"})
	must(t, "create calm", err)
	list, err := s.Analytics().ListRules(ctx, "", 0)
	must(t, "list", err)
	if len(list) != 2 || list[0].Name != "calm" || list[1].Name != "hot" {
		t.Errorf("ListRules: %+v; want calm, hot", list)
	}
	list, err = s.Analytics().ListRules(ctx, "calm", 0)
	must(t, "list after", err)
	if len(list) != 1 || list[0].Name != "hot" {
		t.Errorf("ListRules after calm: %+v; want hot", list)
	}
	r.Group, r.ThingType, r.Enabled = "g2", "", false
	u, err := s.Analytics().UpdateRule(ctx, r)
	must(t, "update", err)
	eq(t, "Group", u.Group, "g2")
	eq(t, "Enabled", u.Enabled, false)
	_, err = s.Analytics().UpdateRule(ctx, store.AnalyticsRule{Name: "nope", Kind: "x"})
	wantNotFound(t, "update missing", err, "analytics rule", "nope")

	must(t, "put states", s.Analytics().PutStates(ctx, []store.DetectorState{
		{Rule: "hot", Thing: "dev", State: []byte{1, 2}, UpdatedAt: base},
		{Rule: "calm", Thing: "dev", State: []byte{3}},
		{Rule: "hot", Thing: "ghost", State: []byte{4}},     // skipped
		{Rule: "ghost", Thing: "dev", State: []byte{5}},     // skipped
		{Rule: "hot", Thing: "dev", State: []byte{1, 2, 3}}, // later wins
	}))
	states, err := s.Analytics().States(ctx)
	must(t, "states", err)
	if len(states) != 2 || states[0].Rule != "calm" || states[1].Rule != "hot" || string(states[1].State) != "\x01\x02\x03" {
		t.Fatalf("States: %+v; want calm/dev, hot/dev [1 2 3]", states)
	}
	must(t, "delete state", s.Analytics().PutStates(ctx, []store.DetectorState{{Rule: "calm", Thing: "dev"}}))
	must(t, "delete rule", s.Analytics().DeleteRule(ctx, "hot"))
	wantNotFound(t, "delete twice", s.Analytics().DeleteRule(ctx, "hot"), "analytics rule", "hot")
	states, err = s.Analytics().States(ctx)
	must(t, "states", err)
	if len(states) != 0 {
		t.Errorf("States after deletes: %+v; want none", states)
	}
}
