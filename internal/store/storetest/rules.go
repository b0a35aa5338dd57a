package storetest

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/store"
)

func checkRule(t *testing.T, what string, got, want store.Rule) {
	t.Helper()
	if got.Name != want.Name || got.SQL != want.SQL || got.Description != want.Description || got.Enabled != want.Enabled {
		t.Errorf("%s: got {%q %q %q %v}; want {%q %q %q %v}", what,
			got.Name, got.SQL, got.Description, got.Enabled, want.Name, want.SQL, want.Description, want.Enabled)
	}
	if !jsonEqual(got.Actions, want.Actions) {
		t.Errorf("%s: Actions: got %s; want %s", what, got.Actions, want.Actions)
	}
	if !jsonEqual(got.ErrorAction, want.ErrorAction) {
		t.Errorf("%s: ErrorAction: got %s; want %s", what, got.ErrorAction, want.ErrorAction)
	}
	eqTime(t, what+": CreatedAt", got.CreatedAt, want.CreatedAt)
	eqTime(t, what+": UpdatedAt", got.UpdatedAt, want.UpdatedAt)
}

// jsonEqual compares two JSON texts by value; nil equals nil only.
func jsonEqual(a, b json.RawMessage) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}

func testRules(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("RoundTrip", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		in := store.Rule{
			Name: "hot", SQL: "SELECT * FROM 'things/+/telemetry' WHERE temp > 50", Description: "too hot",
			Enabled:     true,
			Actions:     json.RawMessage(`[{"type":"republish","topic":"alerts/${topic(2)}"},{"type":"log"}]`),
			ErrorAction: json.RawMessage(`{"type":"log"}`),
			CreatedAt:   base, UpdatedAt: base.Add(time.Minute),
		}
		want := in
		want.CreatedAt, want.UpdatedAt = ms(in.CreatedAt), ms(in.UpdatedAt)
		got, err := s.Rules().Create(ctx, in)
		must(t, "Create", err)
		checkRule(t, "Create result", got, want)
		got, err = s.Rules().Get(ctx, "hot")
		must(t, "Get", err)
		checkRule(t, "Get", got, want)
		list, err := s.Rules().List(ctx, "", 0)
		must(t, "List", err)
		if len(list) != 1 {
			t.Fatalf("List: got %d rules; want 1", len(list))
		}
		checkRule(t, "List[0]", list[0], want)
	})

	t.Run("Defaults", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		w := startWindow()
		got, err := s.Rules().Create(ctx, store.Rule{Name: "bare", SQL: "SELECT * FROM '#'"})
		w = w.end()
		must(t, "Create", err)
		checkNow(t, "CreatedAt", got.CreatedAt, w)
		eqTime(t, "UpdatedAt", got.UpdatedAt, got.CreatedAt)
		if got.Enabled {
			t.Errorf("Enabled: got true; want false (as given)")
		}
		if !jsonEqual(got.Actions, json.RawMessage(`[]`)) {
			t.Errorf("Actions: got %s; want []", got.Actions)
		}
		if got.ErrorAction != nil {
			t.Errorf("ErrorAction: got %s; want nil", got.ErrorAction)
		}
	})

	t.Run("Update", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		want, err := s.Rules().Create(ctx, store.Rule{Name: "r", SQL: "SELECT 1 FROM 'a'", Enabled: true,
			Actions: json.RawMessage(`[{"type":"log"}]`), ErrorAction: json.RawMessage(`{"type":"log"}`), CreatedAt: base})
		must(t, "Create", err)
		w := startWindow()
		got, err := s.Rules().Update(ctx, store.Rule{Name: "r", SQL: "SELECT 2 FROM 'b'", Description: "d", Enabled: false,
			Actions: json.RawMessage(`[{"type":"telemetry"}]`)})
		w = w.end()
		must(t, "Update", err)
		checkNow(t, "Update: UpdatedAt", got.UpdatedAt, w)
		want.SQL, want.Description, want.Enabled, want.UpdatedAt = "SELECT 2 FROM 'b'", "d", false, got.UpdatedAt
		want.Actions, want.ErrorAction = json.RawMessage(`[{"type":"telemetry"}]`), nil
		checkRule(t, "Update result", got, want)
		got, err = s.Rules().Get(ctx, "r")
		must(t, "Get", err)
		checkRule(t, "Get after Update", got, want)
	})

	t.Run("ListPages", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		for _, n := range []string{"c", "a", "b"} {
			_, err := s.Rules().Create(ctx, store.Rule{Name: n, SQL: "SELECT * FROM '#'"})
			must(t, "Create "+n, err)
		}
		list, err := s.Rules().List(ctx, "", 2)
		must(t, "List", err)
		if len(list) != 2 || list[0].Name != "a" || list[1].Name != "b" {
			t.Fatalf("List page 1: got %v; want a, b", ruleNames(list))
		}
		list, err = s.Rules().List(ctx, "b", 2)
		must(t, "List", err)
		if len(list) != 1 || list[0].Name != "c" {
			t.Fatalf("List page 2: got %v; want c", ruleNames(list))
		}
	})

	t.Run("Errors", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Rules().Create(ctx, store.Rule{Name: "r", SQL: "SELECT * FROM '#'"})
		must(t, "Create", err)
		_, err = s.Rules().Create(ctx, store.Rule{Name: "r", SQL: "SELECT * FROM '#'"})
		wantConflict(t, "Create duplicate", err, `rule "r" already exists`)
		_, err = s.Rules().Get(ctx, "ghost")
		wantNotFound(t, "Get missing", err, "rule", "ghost")
		_, err = s.Rules().Update(ctx, store.Rule{Name: "ghost"})
		wantNotFound(t, "Update missing", err, "rule", "ghost")
		err = s.Rules().Delete(ctx, "ghost")
		wantNotFound(t, "Delete missing", err, "rule", "ghost")
		must(t, "Delete", s.Rules().Delete(ctx, "r"))
		_, err = s.Rules().Get(ctx, "r")
		wantNotFound(t, "Get after Delete", err, "rule", "r")
	})

	t.Run("Seed", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		def := store.Rule{Name: "telemetry", SQL: "SELECT * FROM 'things/+/telemetry'", Enabled: true,
			Actions: json.RawMessage(`[{"type":"telemetry"}]`)}
		created, err := s.Rules().Seed(ctx, def)
		must(t, "Seed", err)
		if !created {
			t.Fatalf("first Seed: created false; want true")
		}
		got, err := s.Rules().Get(ctx, "telemetry")
		must(t, "Get", err)
		def.CreatedAt, def.UpdatedAt = got.CreatedAt, got.UpdatedAt
		checkRule(t, "seeded", got, def)
		created, err = s.Rules().Seed(ctx, def)
		must(t, "Seed again", err)
		if created {
			t.Errorf("second Seed: created true; want false")
		}
		must(t, "Delete", s.Rules().Delete(ctx, "telemetry"))
		created, err = s.Rules().Seed(ctx, def)
		must(t, "Seed after Delete", err)
		if created {
			t.Errorf("Seed after Delete: created true; want false (a deleted built-in rule stays deleted)")
		}
		_, err = s.Rules().Get(ctx, "telemetry")
		wantNotFound(t, "Get after Seed after Delete", err, "rule", "telemetry")

		// A user's rule of the seeded name is kept.
		_, err = s.Rules().Create(ctx, store.Rule{Name: "mine", SQL: "SELECT a FROM 'x'"})
		must(t, "Create mine", err)
		created, err = s.Rules().Seed(ctx, store.Rule{Name: "mine", SQL: "SELECT b FROM 'y'"})
		must(t, "Seed mine", err)
		if created {
			t.Errorf("Seed over a user rule: created true; want false")
		}
		got, err = s.Rules().Get(ctx, "mine")
		must(t, "Get mine", err)
		if got.SQL != "SELECT a FROM 'x'" {
			t.Errorf("Seed replaced a user rule: SQL %q", got.SQL)
		}
	})
}

func ruleNames(rs []store.Rule) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}
