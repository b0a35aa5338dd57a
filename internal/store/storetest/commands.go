package storetest

import (
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

func checkCommand(t *testing.T, what string, got, want store.Command) {
	t.Helper()
	eq(t, what+".ID", got.ID, want.ID)
	eq(t, what+".Thing", got.Thing, want.Thing)
	eq(t, what+".Name", got.Name, want.Name)
	if !jsonEqual(got.Payload, want.Payload) {
		t.Errorf("%s.Payload: got %s; want %s", what, got.Payload, want.Payload)
	}
	eq(t, what+".Status", got.Status, want.Status)
	eqTime(t, what+".CreatedAt", got.CreatedAt, want.CreatedAt)
	eqTime(t, what+".ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	eqTimePtr(t, what+".DeliveredAt", got.DeliveredAt, want.DeliveredAt)
	eqTimePtr(t, what+".CompletedAt", got.CompletedAt, want.CompletedAt)
	switch {
	case got.Result == nil && want.Result == nil:
	case got.Result == nil || want.Result == nil:
		t.Errorf("%s.Result: got %+v; want %+v", what, got.Result, want.Result)
	default:
		eq(t, what+".Result.Status", got.Result.Status, want.Result.Status)
		if !jsonEqual(got.Result.Output, want.Result.Output) {
			t.Errorf("%s.Result.Output: got %s; want %s", what, got.Result.Output, want.Result.Output)
		}
	}
}

func commandIDs(list []store.Command) []string {
	ids := make([]string, len(list))
	for i, c := range list {
		ids[i] = c.ID
	}
	return ids
}

func testCommands(t *testing.T, open func(t *testing.T) store.Store) {
	newStore := func(t *testing.T, things ...string) store.Store {
		s := open(t)
		for _, n := range things {
			_, err := s.Things().Create(t.Context(), store.Thing{Name: n})
			must(t, "create thing "+n, err)
		}
		return s
	}

	t.Run("RoundTrip", func(t *testing.T) {
		s, ctx := newStore(t, "dev"), t.Context()
		in := store.Command{ID: "cmd_1", Thing: "dev", Name: "reboot", Payload: []byte(`{"delaySeconds":5}`),
			Status: store.CommandQueued, CreatedAt: base, ExpiresAt: base.Add(time.Hour)}
		want := in
		want.CreatedAt, want.ExpiresAt = ms(in.CreatedAt), ms(in.ExpiresAt)
		got, err := s.Commands().Create(ctx, in)
		must(t, "Create", err)
		checkCommand(t, "Create result", got, want)
		got, err = s.Commands().Get(ctx, "dev", "cmd_1")
		must(t, "Get", err)
		checkCommand(t, "Get", got, want)

		// No payload is kept as none.
		got, err = s.Commands().Create(ctx, store.Command{ID: "cmd_2", Thing: "dev", Name: "locate", ExpiresAt: base.Add(time.Hour)})
		must(t, "Create without payload", err)
		if got.Payload != nil || got.Status != store.CommandQueued {
			t.Errorf("Create without payload: got payload %s, status %q; want nil, queued", got.Payload, got.Status)
		}
	})

	t.Run("Errors", func(t *testing.T) {
		s, ctx := newStore(t, "dev", "other"), t.Context()
		_, err := s.Commands().Create(ctx, store.Command{ID: "c1", Thing: "ghost", Name: "reboot", ExpiresAt: base})
		wantNotFound(t, "Create for a missing thing", err, "thing", "ghost")
		_, err = s.Commands().Create(ctx, store.Command{ID: "c1", Thing: "dev", Name: "reboot", ExpiresAt: base})
		must(t, "Create", err)
		_, err = s.Commands().Create(ctx, store.Command{ID: "c1", Thing: "dev", Name: "reboot", ExpiresAt: base})
		wantConflict(t, "Create duplicate", err, `command "c1" already exists`)
		_, err = s.Commands().Get(ctx, "dev", "nope")
		wantNotFound(t, "Get missing", err, "command", "nope")
		_, err = s.Commands().Get(ctx, "other", "c1")
		wantNotFound(t, "Get of another thing's command", err, "command", "c1")
		_, err = s.Commands().Transition(ctx, "other", "c1", []string{store.CommandQueued}, store.CommandCancelled, base, nil)
		wantNotFound(t, "Transition of another thing's command", err, "command", "c1")
	})

	t.Run("Lifecycle", func(t *testing.T) {
		s, ctx := newStore(t, "dev"), t.Context()
		c, err := s.Commands().Create(ctx, store.Command{ID: "c1", Thing: "dev", Name: "wipe", CreatedAt: base, ExpiresAt: base.Add(time.Hour)})
		must(t, "Create", err)
		at := base.Add(time.Second)
		got, err := s.Commands().Transition(ctx, "dev", "c1", []string{store.CommandQueued}, store.CommandDelivered, at, nil)
		must(t, "Transition to delivered", err)
		c.Status, c.DeliveredAt = store.CommandDelivered, msPtr(at)
		checkCommand(t, "delivered", got, c)

		// A second delivery is a conflict naming the status, with the command.
		got, err = s.Commands().Transition(ctx, "dev", "c1", []string{store.CommandQueued}, store.CommandDelivered, at, nil)
		wantConflict(t, "Transition from the wrong status", err, `command "c1" is delivered`)
		checkCommand(t, "command returned with the conflict", got, c)

		done := base.Add(2 * time.Second)
		res := &store.CommandResult{Status: store.CommandFailed, Output: []byte(`{"error":"busy"}`)}
		got, err = s.Commands().Transition(ctx, "dev", "c1", []string{store.CommandQueued, store.CommandDelivered}, store.CommandFailed, done, res)
		must(t, "Transition to failed", err)
		c.Status, c.CompletedAt, c.Result = store.CommandFailed, msPtr(done), res
		checkCommand(t, "failed", got, c)
		got, err = s.Commands().Get(ctx, "dev", "c1")
		must(t, "Get", err)
		checkCommand(t, "Get after result", got, c)

		// A result for a command never acknowledged also sets DeliveredAt.
		_, err = s.Commands().Create(ctx, store.Command{ID: "c2", Thing: "dev", Name: "lock", CreatedAt: base, ExpiresAt: base.Add(time.Hour)})
		must(t, "Create", err)
		res = &store.CommandResult{Status: store.CommandSucceeded}
		got, err = s.Commands().Transition(ctx, "dev", "c2", []string{store.CommandQueued, store.CommandDelivered}, store.CommandSucceeded, done, res)
		must(t, "Transition queued to succeeded", err)
		eqTimePtr(t, "DeliveredAt", got.DeliveredAt, msPtr(done))
		eqTimePtr(t, "CompletedAt", got.CompletedAt, msPtr(done))

		// Cancel sets CompletedAt only.
		_, err = s.Commands().Create(ctx, store.Command{ID: "c3", Thing: "dev", Name: "lock", CreatedAt: base, ExpiresAt: base.Add(time.Hour)})
		must(t, "Create", err)
		got, err = s.Commands().Transition(ctx, "dev", "c3", []string{store.CommandQueued}, store.CommandCancelled, done, nil)
		must(t, "cancel", err)
		eq(t, "Status", got.Status, store.CommandCancelled)
		eqTimePtr(t, "DeliveredAt", got.DeliveredAt, nil)
		eqTimePtr(t, "CompletedAt", got.CompletedAt, msPtr(done))
		if got.Result != nil {
			t.Errorf("Result: got %+v; want nil", got.Result)
		}
	})

	t.Run("PendingListExpire", func(t *testing.T) {
		s, ctx := newStore(t, "dev", "other"), t.Context()
		mk := func(id, thing string, created time.Time, ttl time.Duration) {
			t.Helper()
			_, err := s.Commands().Create(ctx, store.Command{ID: id, Thing: thing, Name: "reboot", CreatedAt: created, ExpiresAt: created.Add(ttl)})
			must(t, "Create "+id, err)
		}
		// Created in this order; a later one may carry an earlier time.
		mk("a", "dev", base, time.Hour)
		mk("b", "dev", base.Add(time.Second), time.Minute)
		mk("c", "dev", base, 10*time.Second)
		mk("d", "other", base, time.Hour)
		mk("e", "dev", base, time.Hour)
		_, err := s.Commands().Transition(ctx, "dev", "e", []string{store.CommandQueued}, store.CommandDelivered, base, nil)
		must(t, "deliver e", err)

		now := base.Add(30 * time.Second)
		p, err := s.Commands().Pending(ctx, "dev", now, 0)
		must(t, "Pending", err)
		eqList(t, "Pending", commandIDs(p), []string{"a", "b"})
		p, err = s.Commands().Pending(ctx, "dev", now, 1)
		must(t, "Pending limit 1", err)
		eqList(t, "Pending limit 1", commandIDs(p), []string{"a"})

		l, err := s.Commands().List(ctx, store.CommandFilter{Thing: "dev"})
		must(t, "List", err)
		eqList(t, "List", commandIDs(l), []string{"e", "c", "b", "a"})
		l, err = s.Commands().List(ctx, store.CommandFilter{Thing: "dev", Limit: 2})
		must(t, "List page 1", err)
		eqList(t, "List page 1", commandIDs(l), []string{"e", "c"})
		l, err = s.Commands().List(ctx, store.CommandFilter{Thing: "dev", Limit: 2, Before: "c"})
		must(t, "List page 2", err)
		eqList(t, "List page 2", commandIDs(l), []string{"b", "a"})
		l, err = s.Commands().List(ctx, store.CommandFilter{Thing: "dev", Status: store.CommandDelivered})
		must(t, "List delivered", err)
		eqList(t, "List delivered", commandIDs(l), []string{"e"})

		w := startWindow()
		x, err := s.Commands().Expire(ctx, now, 0)
		w = w.end()
		must(t, "Expire", err)
		eqList(t, "Expire", commandIDs(x), []string{"c"})
		if len(x) == 1 {
			eq(t, "expired Status", x[0].Status, store.CommandExpired)
			if x[0].CompletedAt == nil {
				t.Errorf("expired CompletedAt: got nil; want now")
			} else {
				checkNow(t, "expired CompletedAt", *x[0].CompletedAt, w)
			}
		}
		got, err := s.Commands().Get(ctx, "dev", "c")
		must(t, "Get c", err)
		eq(t, "Get c: Status", got.Status, store.CommandExpired)
		x, err = s.Commands().Expire(ctx, now, 0)
		must(t, "Expire again", err)
		eqList(t, "Expire again", commandIDs(x), []string{})

		// Deleting the thing deletes its commands.
		must(t, "Delete thing", s.Things().Delete(ctx, "dev"))
		_, err = s.Commands().Get(ctx, "dev", "a")
		wantKind(t, "Get after the thing was deleted", err, core.KindNotFound)
		got, err = s.Commands().Get(ctx, "other", "d")
		must(t, "Get other's command", err)
		eq(t, "other's command", got.ID, "d")
	})
}
