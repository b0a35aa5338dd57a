package storetest

import (
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

func execThings(list []store.JobExecution) []string {
	out := []string{}
	for _, e := range list {
		out = append(out, e.Thing)
	}
	return out
}

func testJobs(t *testing.T, open func(t *testing.T) store.Store) {
	s, ctx := open(t), t.Context()
	js := s.Jobs()
	for _, n := range []string{"a", "b", "c", "d"} {
		_, err := s.Things().Create(ctx, store.Thing{Name: n})
		must(t, "Create "+n, err)
	}
	spec := []byte(`{"document":{"op":"x"}}`)
	j, n, err := js.Create(ctx, store.Job{ID: "j1", Description: "first", Status: store.JobInProgress, Spec: spec, CreatedAt: base}, []string{"c", "a", "nosuch", "b"})
	must(t, "Create j1", err)
	eq(t, "executions created", n, 3)
	eq(t, "ID", j.ID, "j1")
	eq(t, "Description", j.Description, "first")
	eqBytes(t, "Spec", j.Spec, spec)
	eqTime(t, "CreatedAt", j.CreatedAt, ms(base))
	eqTime(t, "ReleasedAt defaults to CreatedAt", j.ReleasedAt, ms(base))
	_, _, err = js.Create(ctx, store.Job{ID: "j1", Status: store.JobInProgress, Spec: spec}, nil)
	wantConflict(t, "Create j1 again", err, "j1")
	_, err = js.Get(ctx, "nosuch")
	wantNotFound(t, "Get nosuch", err, "job", "nosuch")

	// Nothing is visible before the rollout releases it; release is in
	// creation order and never twice.
	counts, err := js.Counts(ctx, "j1")
	must(t, "Counts", err)
	eq(t, "SCHEDULED", counts[store.JobExecScheduled], 3)
	t1 := base.Add(time.Minute)
	rel, err := js.Release(ctx, "j1", 2, t1, t1)
	must(t, "Release 2", err)
	eqList(t, "released", execThings(rel), []string{"c", "a"})
	eq(t, "released status", rel[0].Status, store.JobExecQueued)
	eqTimePtr(t, "QueuedAt", rel[0].QueuedAt, msPtr(t1))
	eq(t, "released version", rel[0].VersionNumber, int64(2))
	rel, err = js.Release(ctx, "j1", 5, t1, t1.Add(time.Second))
	must(t, "Release rest", err)
	eqList(t, "released rest", execThings(rel), []string{"b"})
	rel, err = js.Release(ctx, "j1", 5, t1, t1)
	must(t, "Release none", err)
	eq(t, "released nothing", len(rel), 0)
	j, err = js.Get(ctx, "j1")
	must(t, "Get j1", err)
	eq(t, "Released", j.Released, int64(3))
	eqTime(t, "ReleasedAt", j.ReleasedAt, ms(t1))

	// Optimistic updates.
	e, err := js.Execution(ctx, "j1", "a")
	must(t, "Execution a", err)
	started := base.Add(2 * time.Minute)
	timeout := started.Add(time.Hour)
	e.Status, e.StartedAt, e.TimeoutAt, e.StatusDetails = store.JobExecInProgress, &started, &timeout, map[string]string{"step": "1"}
	e2, err := js.UpdateExecution(ctx, e, e.VersionNumber)
	must(t, "UpdateExecution", err)
	eq(t, "version", e2.VersionNumber, e.VersionNumber+1)
	eq(t, "status", e2.Status, store.JobExecInProgress)
	eqMap(t, "details", e2.StatusDetails, map[string]string{"step": "1"})
	eqTimePtr(t, "TimeoutAt", e2.TimeoutAt, msPtr(timeout))
	cur, err := js.UpdateExecution(ctx, e, e.VersionNumber) // stale
	wantKind(t, "UpdateExecution stale", err, core.KindConflict)
	eq(t, "stale update returns the stored version", cur.VersionNumber, e2.VersionNumber)
	_, err = js.Execution(ctx, "j1", "d")
	wantNotFound(t, "Execution d", err, "job execution", "j1/d")

	due, err := js.TimedOut(ctx, timeout, 0)
	must(t, "TimedOut", err)
	eqList(t, "timed out", execThings(due), []string{"a"})
	due, err = js.TimedOut(ctx, timeout.Add(-time.Millisecond), 0)
	must(t, "TimedOut early", err)
	eq(t, "none timed out early", len(due), 0)

	// Listing by job (by thing) and by thing.
	list, err := js.Executions(ctx, store.JobExecutionFilter{JobID: "j1"})
	must(t, "Executions j1", err)
	eqList(t, "j1 executions", execThings(list), []string{"a", "b", "c"})
	list, err = js.Executions(ctx, store.JobExecutionFilter{JobID: "j1", After: "a", Limit: 1})
	must(t, "Executions j1 page", err)
	eqList(t, "j1 page", execThings(list), []string{"b"})
	list, err = js.Executions(ctx, store.JobExecutionFilter{JobID: "j1", Statuses: []string{store.JobExecInProgress}})
	must(t, "Executions in progress", err)
	eqList(t, "in progress", execThings(list), []string{"a"})

	// Continuous targets: added once.
	_, _, err = js.Create(ctx, store.Job{ID: "j2", Status: store.JobInProgress, Continuous: true, Spec: spec}, []string{"a"})
	must(t, "Create j2", err)
	added, err := js.AddExecutions(ctx, "j2", []string{"a", "d", "nosuch"})
	must(t, "AddExecutions", err)
	eqList(t, "added", added, []string{"d"})
	_, err = js.AddExecutions(ctx, "nosuch", []string{"a"})
	wantNotFound(t, "AddExecutions nosuch", err, "job", "nosuch")
	list, err = js.Executions(ctx, store.JobExecutionFilter{Thing: "a"})
	must(t, "Executions of a", err)
	eq(t, "a's executions", len(list), 2)

	// Cancel: every scheduled and queued one at once.
	moved, err := js.TransitionAll(ctx, "j1", []string{store.JobExecQueued, store.JobExecScheduled}, store.JobExecCanceled, t1)
	must(t, "TransitionAll", err)
	eqList(t, "canceled", sorted(moved), []string{"b", "c"})
	counts, err = js.Counts(ctx, "j1")
	must(t, "Counts", err)
	eq(t, "CANCELED", counts[store.JobExecCanceled], 2)
	eq(t, "IN_PROGRESS", counts[store.JobExecInProgress], 1)

	done := base.Add(time.Hour)
	j.Status, j.ReasonCode, j.CompletedAt = store.JobCanceled, "abort", &done
	j, err = js.Update(ctx, j)
	must(t, "Update", err)
	eq(t, "Status", j.Status, store.JobCanceled)
	eq(t, "ReasonCode", j.ReasonCode, "abort")
	eqTimePtr(t, "CompletedAt", j.CompletedAt, msPtr(done))
	_, err = js.Update(ctx, store.Job{ID: "nosuch"})
	wantNotFound(t, "Update nosuch", err, "job", "nosuch")

	jobs, err := js.List(ctx, "", 0)
	must(t, "List", err)
	eq(t, "jobs", len(jobs), 2)
	jobs, err = js.List(ctx, "j1", 0)
	must(t, "List after j1", err)
	eq(t, "jobs after j1", len(jobs), 1)

	// Executions go with their thing and their job.
	must(t, "Delete thing a", s.Things().Delete(ctx, "a"))
	_, err = js.Execution(ctx, "j2", "a")
	wantNotFound(t, "Execution of a deleted thing", err, "job execution", "j2/a")
	must(t, "Delete j1", js.Delete(ctx, "j1"))
	list, err = js.Executions(ctx, store.JobExecutionFilter{JobID: "j1"})
	must(t, "Executions of a deleted job", err)
	eq(t, "executions of a deleted job", len(list), 0)
	wantNotFound(t, "Delete j1 again", js.Delete(ctx, "j1"), "job", "j1")
}
