package storetest

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// testConcurrency runs 20 goroutines that create and update their own
// things, record presence for themselves and their neighbours, read, list,
// and all race to create one contested thing. The only error allowed is the
// conflict of losing that race; every write must be visible afterwards.
func testConcurrency(t *testing.T, open func(t *testing.T) store.Store) {
	const (
		workers = 20
		rounds  = 10
	)
	s, ctx := open(t), t.Context()
	fixture{Groups: []string{"crowd"}, Policies: []string{"p"}}.create(t, ctx, s)

	var (
		wg      sync.WaitGroup
		winners atomic.Int32
		mu      sync.Mutex
		errs    []error
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		errs = append(errs, fmt.Errorf(format, args...))
		mu.Unlock()
	}
	name := func(i int) string { return fmt.Sprintf("worker-%02d", i%workers) }
	for i := range workers {
		wg.Go(func() {
			me := name(i)
			if _, err := s.Things().Create(ctx, store.Thing{Name: me, Groups: []string{"crowd"}, Enabled: true}); err != nil {
				fail("Create %s: %v", me, err)
				return
			}
			for j := range rounds {
				n := strconv.Itoa(j)
				if _, err := s.Things().Update(ctx, me, store.ThingPatch{
					Attributes: map[string]string{"round": n}, Tags: []string{"r" + n}, Policies: []string{"p"},
				}); err != nil {
					fail("Update %s round %d: %v", me, j, err)
				}
				// The neighbour may not exist yet: ignored.
				at := time.Now()
				if err := s.Things().RecordPresence(ctx, []store.Presence{
					{Thing: me, Connected: j%2 == 0, At: at},
					{Thing: name(i + 1), Connected: true, At: at},
				}); err != nil {
					fail("RecordPresence %s round %d: %v", me, j, err)
				}
				th, err := s.Things().Get(ctx, me)
				if err != nil {
					fail("Get %s round %d: %v", me, j, err)
				} else if th.Attributes["round"] != n {
					fail("Get %s round %d: got attributes %v; want round=%s (own write not visible)", me, j, th.Attributes, n)
				}
				if _, err := s.Things().List(ctx, store.ThingFilter{Group: "crowd"}); err != nil {
					fail("List round %d: %v", j, err)
				}
				if _, _, err := s.Things().Count(ctx); err != nil {
					fail("Count round %d: %v", j, err)
				}
				_, err = s.Things().Create(ctx, store.Thing{Name: "contested", Attributes: map[string]string{"by": me}})
				switch {
				case err == nil:
					winners.Add(1)
				case core.KindOf(err) != core.KindConflict:
					fail("Create contested by %s: got %v (kind %s); want success or a conflict", me, err, core.KindOf(err))
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	eq(t, "number of successful Creates of the contested thing", winners.Load(), int32(1))

	total, _, err := s.Things().Count(ctx)
	must(t, "Count", err)
	eq(t, "Count total", total, workers+1)
	list, err := s.Things().List(ctx, store.ThingFilter{Group: "crowd"})
	must(t, "List", err)
	eq(t, "members of crowd", len(list), workers)
	for _, th := range list {
		last := strconv.Itoa(rounds - 1)
		eqMap(t, th.Name+".Attributes", th.Attributes, map[string]string{"round": last})
		eqList(t, th.Name+".Tags", th.Tags, []string{"r" + last})
		eqList(t, th.Name+".Policies", th.Policies, []string{"p"})
		if th.LastSeen == nil {
			t.Errorf("%s.LastSeen: got nil; want the time of its last presence", th.Name)
		}
	}
}
