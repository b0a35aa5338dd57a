package storetest

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
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

// testNodePresence: the things connected on a node that died are marked
// disconnected by a surviving node, each once even when two nodes reset
// it together; the other nodes' things stay connected.
func testNodePresence(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	ctx := context.Background()
	for _, n := range []string{"a1", "a2", "b1", "off"} {
		_, err := s.Things().Create(ctx, store.Thing{Name: n, Enabled: true})
		must(t, "Create", err)
	}
	nodes, err := s.Things().ConnectedNodes(ctx)
	must(t, "ConnectedNodes", err)
	eq(t, "ConnectedNodes before any connect", len(nodes), 0)
	t1 := base.Add(time.Second)
	must(t, "RecordPresence", s.Things().RecordPresence(ctx, []store.Presence{
		{Thing: "a1", Connected: true, At: t1, Node: "node-a"},
		{Thing: "a2", Connected: true, At: t1, Node: "node-a"},
		{Thing: "b1", Connected: true, At: t1, Node: "node-b"},
	}))
	nodes, err = s.Things().ConnectedNodes(ctx)
	must(t, "ConnectedNodes", err)
	eq(t, "ConnectedNodes", strings.Join(nodes, ","), "node-a,node-b")

	// Two survivors reset node-a together: every thing is returned once.
	var (
		wg   sync.WaitGroup
		got  [2][]string
		errs [2]error
	)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = s.Things().ResetNodePresence(ctx, "node-a")
		}()
	}
	wg.Wait()
	must(t, "ResetNodePresence", errors.Join(errs[:]...))
	all := append(append([]string{}, got[0]...), got[1]...)
	sort.Strings(all)
	eq(t, "things reset by two callers together", strings.Join(all, ","), "a1,a2")
	for _, n := range []string{"a1", "a2"} {
		th, err := s.Things().Get(ctx, n)
		must(t, "Get", err)
		eq(t, n+": Connected", th.Connected, false)
		eq(t, n+": Node", th.Node, "")
		eqTimePtr(t, n+": LastSeen", th.LastSeen, msPtr(t1))
	}
	th, err := s.Things().Get(ctx, "b1")
	must(t, "Get", err)
	eq(t, "b1 on the other node: Connected", th.Connected, true)
	again, err := s.Things().ResetNodePresence(ctx, "node-a")
	must(t, "ResetNodePresence", err)
	eq(t, "second reset", len(again), 0)
	empty, err := s.Things().ResetNodePresence(ctx, "")
	must(t, "ResetNodePresence", err)
	eq(t, "reset of no node", len(empty), 0)
	nodes, err = s.Things().ConnectedNodes(ctx)
	must(t, "ConnectedNodes", err)
	eq(t, "ConnectedNodes after the reset", strings.Join(nodes, ","), "node-b")
}
