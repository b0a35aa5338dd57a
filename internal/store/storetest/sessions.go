package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/moteiot/mote/internal/store"
)

func testSessions(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	ss := open(t).Sessions()
	if list, err := ss.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("List on an empty store = %v, %v; want none", list, err)
	}
	if err := ss.Apply(ctx, store.SessionChanges{}); err != nil {
		t.Fatalf("Apply of nothing = %v", err)
	}
	msg := func(client string, id uint16, data string) store.SessionMessage {
		m := store.SessionMessage{Client: client, PacketID: id}
		if data != "" {
			m.Data = []byte(data)
		}
		return m
	}
	err := ss.Apply(ctx, store.SessionChanges{
		Clients: []store.SessionClient{
			{ID: "dev-b", Data: []byte("b1")},
			{ID: "dev-a", Data: []byte("a1")},
			{ID: "dev-b", Data: []byte("b2")}, // a later entry wins
			{ID: "gone"},                      // deleting nothing is fine
		},
		Messages: []store.SessionMessage{
			msg("dev-a", 7, "a7"), msg("dev-a", 2, "a2"), msg("dev-a", 9, "a9"),
			msg("dev-a", 9, ""),                           // deleted in the same batch
			msg("dev-b", 1, "b1"), msg("dev-b", 1, "b1'"), // replaced
			msg("orphan", 1, "x"), // no session: not listed
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "dev-a=a1[2=a2 7=a7] dev-b=b2[1=b1'] "
	if got := sessionsString(t, ss); got != want {
		t.Fatalf("List = %s; want %s", got, want)
	}

	// Reset drops the old messages before new ones of the same batch.
	err = ss.Apply(ctx, store.SessionChanges{
		Clients:  []store.SessionClient{{ID: "dev-a", Data: []byte("a2"), Reset: true}},
		Messages: []store.SessionMessage{msg("dev-a", 3, "new")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sessionsString(t, ss), "dev-a=a2[3=new] dev-b=b2[1=b1'] "; got != want {
		t.Fatalf("after Reset, List = %s; want %s", got, want)
	}

	// Get: one client id with its messages (a cluster node taking a
	// session over), nothing for an unknown one or a message without a
	// session.
	one, ok, err := ss.Get(ctx, "dev-a")
	if err != nil || !ok || one.ID != "dev-a" || string(one.Data) != "a2" || len(one.Messages) != 1 ||
		one.Messages[0].PacketID != 3 || string(one.Messages[0].Data) != "new" || one.Messages[0].Client != "dev-a" {
		t.Fatalf("Get(dev-a) = %+v, %v, %v; want a2 with message 3=new", one, ok, err)
	}
	for _, id := range []string{"nobody", "orphan", "dev-%"} {
		if got, ok, err := ss.Get(ctx, id); err != nil || ok {
			t.Fatalf("Get(%s) = %+v, %v, %v; want none", id, got, ok, err)
		}
	}

	// Deleting a session deletes its messages; a new session with the
	// same id does not see them.
	if err := ss.Apply(ctx, store.SessionChanges{Clients: []store.SessionClient{{ID: "dev-b"}}}); err != nil {
		t.Fatal(err)
	}
	if err := ss.Apply(ctx, store.SessionChanges{Clients: []store.SessionClient{{ID: "dev-b", Data: []byte("b3")}}}); err != nil {
		t.Fatal(err)
	}
	if got, want := sessionsString(t, ss), "dev-a=a2[3=new] dev-b=b3[] "; got != want {
		t.Fatalf("after delete and re-create, List = %s; want %s", got, want)
	}
}

func sessionsString(t *testing.T, ss store.SessionStore) string {
	t.Helper()
	list, err := ss.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := ""
	for _, s := range list {
		out += fmt.Sprintf("%s=%s[", s.ID, s.Data)
		for i, m := range s.Messages {
			if m.Client != s.ID {
				t.Errorf("message %d of %s has Client %q", m.PacketID, s.ID, m.Client)
			}
			if i > 0 {
				out += " "
			}
			out += fmt.Sprintf("%d=%s", m.PacketID, m.Data)
		}
		out += "] "
	}
	return out
}
