package ruleengine

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/alarms"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

func TestAlarmActionsRaiseAndClear(t *testing.T) {
	v := newEnv(t)
	st := v.st
	svc := alarms.New(alarms.Options{Store: st.Alarms()})
	if err := svc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	v.e.opts.Alarms = svc // before any rule runs
	ctx := t.Context()
	for _, th := range []string{"s1", "s2"} {
		if _, err := st.Things().Create(ctx, store.Thing{Name: th}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.e.Create(ctx, store.Rule{Name: "hot", Enabled: true,
		SQL:     "SELECT temp, victim FROM 'things/+/telemetry' WHERE temp > 80",
		Actions: json.RawMessage(`[{"type":"raiseAlarm","alarmType":"overheat","severity":"major"}]`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.Create(ctx, store.Rule{Name: "cool", Enabled: true,
		SQL:     "SELECT temp FROM 'things/+/telemetry' WHERE temp < 75",
		Actions: json.RawMessage(`[{"type":"clearAlarm","alarmType":"overheat"}]`)}); err != nil {
		t.Fatal(err)
	}
	// s1 is hot and claims to be s2 in its payload: the alarm is s1's.
	v.publish("things/s1/telemetry", `{"temp": 90, "victim": "s2", "thing": "s2"}`)
	v.publish("things/s1/telemetry", `{"temp": 91}`)
	waitForAlarm := func(what string, cond func([]alarms.Alarm) bool) []alarms.Alarm {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			list, err := svc.List(ctx, store.AlarmFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if cond(list) {
				return list
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; alarms %+v", what, list)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	list := waitForAlarm("count 2", func(l []alarms.Alarm) bool { return len(l) == 1 && l[0].Count == 2 })
	a := list[0]
	if a.Thing != "s1" || a.Type != "overheat" || a.Severity != "major" || a.Status != store.AlarmActive {
		t.Fatalf("alarm %+v; want s1's active major overheat", a)
	}
	if !strings.Contains(string(a.Details), `"temp":91`) {
		t.Fatalf("details %s; want the rule's output", a.Details)
	}
	if l, _ := svc.List(ctx, store.AlarmFilter{Thing: "s2"}); len(l) != 0 {
		t.Fatalf("s2 has alarms %+v; a payload must not name the thing", l)
	}
	v.publish("things/s1/telemetry", `{"temp": 70}`)
	waitForAlarm("the clear", func(l []alarms.Alarm) bool { return len(l) == 1 && l[0].Status == store.AlarmCleared })
}

func TestAlarmActionValidation(t *testing.T) {
	for _, c := range []struct{ actions, field string }{
		{`[{"type":"raiseAlarm","severity":"major"}]`, "actions[0].alarmType"},
		{`[{"type":"raiseAlarm","alarmType":"a/b","severity":"major"}]`, "actions[0].alarmType"},
		{`[{"type":"raiseAlarm","alarmType":"x","severity":"fatal"}]`, "actions[0].severity"},
		{`[{"type":"raiseAlarm","alarmType":"x","severity":"minor","details":[1]}]`, "actions[0].details"},
		{`[{"type":"clearAlarm","alarmType":"x","severity":"minor"}]`, "actions[0].severity"},
		{`[{"type":"log","alarmType":"x"}]`, "actions[0].alarmType"},
	} {
		err := Validate(store.Rule{Name: "r", SQL: "SELECT * FROM 'a'", Actions: json.RawMessage(c.actions)})
		if core.KindOf(err) != core.KindInvalid || core.FieldOf(err) != c.field {
			t.Errorf("Validate(%s) = %v (field %q); want invalid %s", c.actions, err, core.FieldOf(err), c.field)
		}
	}
	if err := Validate(store.Rule{Name: "r", SQL: "SELECT * FROM 'a'",
		Actions: json.RawMessage(`[{"type":"raiseAlarm","alarmType":"x","severity":"critical","details":{"a":1}},{"type":"clearAlarm","alarmType":"y"}]`)}); err != nil {
		t.Errorf("valid alarm actions: %v", err)
	}
}
