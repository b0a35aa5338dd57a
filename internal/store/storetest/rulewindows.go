package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/moteiot/mote/internal/store"
)

func testRuleWindows(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	rw := s.RuleWindows()
	for _, name := range []string{"avg", "max"} {
		_, err := s.Rules().Create(ctx, store.Rule{Name: name, SQL: "SELECT count(*) AS n FROM 'a' GROUP BY thing, TUMBLING(1m)",
			Enabled: true, Actions: json.RawMessage(`[{"type":"log"}]`)})
		must(t, "Create rule", err)
	}
	list, err := rw.List(ctx)
	must(t, "List empty", err)
	eq(t, "List empty", len(list), 0)

	state := []byte{0, 1, 2, 0xff, 'x'} // any bytes
	must(t, "Put", rw.Put(ctx, store.RuleWindowState{Rule: "max", SQL: "v1", State: state, SavedAt: base}))
	must(t, "Put avg", rw.Put(ctx, store.RuleWindowState{Rule: "avg", SQL: "v1", State: []byte("a")}))
	must(t, "Put again", rw.Put(ctx, store.RuleWindowState{Rule: "max", SQL: "v2", State: state, SavedAt: base}))
	// A rule deleted meanwhile: nothing saved, no error.
	must(t, "Put of a missing rule", rw.Put(ctx, store.RuleWindowState{Rule: "gone", SQL: "v1", State: state}))

	list, err = rw.List(ctx)
	must(t, "List", err)
	if len(list) != 2 || list[0].Rule != "avg" || list[1].Rule != "max" {
		t.Fatalf("List = %+v; want avg, max", list)
	}
	eq(t, "SQL", list[1].SQL, "v2")
	if !bytes.Equal(list[1].State, state) {
		t.Errorf("State = %x; want %x", list[1].State, state)
	}
	eqTime(t, "SavedAt", list[1].SavedAt, ms(base))

	must(t, "Delete", rw.Delete(ctx, "avg"))
	must(t, "Delete again", rw.Delete(ctx, "avg"))
	// Deleting the rule deletes its state.
	must(t, "Delete rule", s.Rules().Delete(ctx, "max"))
	list, err = rw.List(ctx)
	must(t, "List after deletes", err)
	eq(t, "List after deletes", len(list), 0)
}
