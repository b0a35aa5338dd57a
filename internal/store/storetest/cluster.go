package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/store"
)

// testPresenceNodes: in a cluster, presence records the node a thing is
// on; a disconnect recorded by another node (the device moved, its old
// connection was taken over) leaves it connected, and LastSeen moves
// either way.
func testPresenceNodes(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	ctx := context.Background()
	_, err := s.Things().Create(ctx, store.Thing{Name: "dev", Enabled: true})
	must(t, "Create", err)
	check := func(op string, connected bool, node string) store.Thing {
		t.Helper()
		th, err := s.Things().Get(ctx, "dev")
		must(t, "Get", err)
		eq(t, op+": Connected", th.Connected, connected)
		eq(t, op+": Node", th.Node, node)
		return th
	}
	check("created", false, "")

	t1, t2, t3 := base.Add(time.Second), base.Add(2*time.Second), base.Add(3*time.Second)
	must(t, "RecordPresence", s.Things().RecordPresence(ctx, []store.Presence{{Thing: "dev", Connected: true, At: t1, Node: "a"}}))
	check("connected on a", true, "a")
	must(t, "RecordPresence", s.Things().RecordPresence(ctx, []store.Presence{{Thing: "dev", Connected: true, At: t2, Node: "b"}}))
	check("moved to b", true, "b")
	must(t, "RecordPresence", s.Things().RecordPresence(ctx, []store.Presence{{Thing: "dev", Connected: false, At: t3, Node: "a"}}))
	th := check("a's late disconnect", true, "b")
	eqTimePtr(t, "a's late disconnect: LastSeen", th.LastSeen, msPtr(t3))
	must(t, "RecordPresence", s.Things().RecordPresence(ctx, []store.Presence{{Thing: "dev", Connected: false, At: t3, Node: "b"}}))
	check("b's disconnect", false, "")
	list, err := s.Things().List(ctx, store.ThingFilter{})
	must(t, "List", err)
	if len(list) != 1 || list[0].Node != "" {
		t.Errorf("List = %+v; want dev with no node", list)
	}
}
