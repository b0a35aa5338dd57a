package storetest

import (
	"context"
	"testing"

	"github.com/moteiot/mote/internal/store"
)

func testRetained(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	rs := open(t).Retained()
	if list, err := rs.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("List on an empty store = %v, %v; want none", list, err)
	}
	if err := rs.Apply(ctx, nil); err != nil {
		t.Fatalf("Apply(nil) = %v", err)
	}
	err := rs.Apply(ctx, []store.RetainedMessage{
		{Topic: "b/status", Data: []byte("one")},
		{Topic: "a/status", Data: []byte{0, 1, 2}},
		{Topic: "c", Data: []byte("x")},
		{Topic: "b/status", Data: []byte("two")}, // a later entry wins
		{Topic: "c", Data: nil},                  // deleted in the same batch
		{Topic: "never-there", Data: nil},        // deleting nothing is fine
	})
	if err != nil {
		t.Fatal(err)
	}
	list, err := rs.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Topic != "a/status" || string(list[0].Data) != "\x00\x01\x02" ||
		list[1].Topic != "b/status" || string(list[1].Data) != "two" {
		t.Fatalf("List = %q; want a/status then b/status=two", list)
	}
	if err := rs.Apply(ctx, []store.RetainedMessage{{Topic: "a/status"}}); err != nil {
		t.Fatal(err)
	}
	if list, _ := rs.List(ctx); len(list) != 1 || list[0].Topic != "b/status" {
		t.Fatalf("List after deleting a/status = %q", list)
	}
}
