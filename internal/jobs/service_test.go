package jobs

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// TestRolloutRateSurvivesRestart releases at maximumPerMinute, then
// restarts the service mid-rollout: the rate is kept and nothing is
// released twice.
func TestRolloutRateSurvivesRestart(t *testing.T) {
	f := newFixture(t, 30)
	ctx := context.Background()
	f.create(t, `{"jobId":"j","targets":{"things":`+things(30)+`},"document":{"op":"x"},"rollout":{"maximumPerMinute":10}}`)
	f.svc.Tick(ctx)
	if c := f.counts(t, "j"); c["QUEUED"] != 1 || c["SCHEDULED"] != 29 {
		t.Fatalf("after the first tick: %v; want 1 QUEUED (released at once), 29 SCHEDULED", c)
	}
	f.svc.Tick(ctx) // no time passed: nothing more
	if c := f.counts(t, "j"); c["QUEUED"] != 1 {
		t.Fatalf("a second tick at the same time released more: %v", c)
	}
	f.clk.Add(30 * time.Second) // 10/min: 5 more
	f.svc.Tick(ctx)
	if c := f.counts(t, "j"); c["QUEUED"] != 6 {
		t.Fatalf("after 30s at 10/min: %v; want 6 QUEUED", c)
	}
	// Restart: a new service on the same store.
	f.svc = f.service(t)
	if err := f.svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer f.svc.Close()
	f.svc.Tick(ctx)
	if c := f.counts(t, "j"); c["QUEUED"] != 6 {
		t.Fatalf("right after a restart: %v; want still 6 QUEUED (nothing released twice)", c)
	}
	f.clk.Add(12 * time.Second)
	f.svc.Tick(ctx)
	info, err := f.svc.Get(ctx, "j")
	if err != nil {
		t.Fatal(err)
	}
	if info.Counts["QUEUED"] != 8 || info.Released != 8 {
		t.Fatalf("12s after the restart: %v released %d; want 8 (the rate kept)", info.Counts, info.Released)
	}
	// A long pause releases at most a minute's worth.
	f.clk.Add(time.Hour)
	f.svc.Tick(ctx)
	if c := f.counts(t, "j"); c["QUEUED"] != 18 {
		t.Fatalf("after an hour's pause: %v; want 18 QUEUED (one minute's worth more)", c)
	}
	// Every execution was released once: version 2 (created 1, released +1).
	list, err := f.st.Jobs().Executions(ctx, store.JobExecutionFilter{JobID: "j", Statuses: []string{"QUEUED"}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		if e.VersionNumber != 2 {
			t.Errorf("%s: version %d; want 2 (released exactly once)", e.Thing, e.VersionNumber)
		}
	}
}

func TestExponentialRate(t *testing.T) {
	sp := Spec{Rollout: &Rollout{MaximumPerMinute: 50, ExponentialRate: &ExponentialRate{BaseRatePerMinute: 2, IncrementFactor: 2,
		RateIncreaseCriteria: RateIncreaseCriteria{NumberOfNotifiedThings: 10}}}}
	for _, tc := range []struct {
		released int64
		want     float64
	}{{0, 2}, {9, 2}, {10, 4}, {25, 8}, {30, 16}, {40, 32}, {50, 50}, {1000, 50}} {
		if got := rateOf(sp, tc.released, 0); got != tc.want {
			t.Errorf("rateOf(released %d) = %v; want %v", tc.released, got, tc.want)
		}
	}
	sp.Rollout.ExponentialRate.RateIncreaseCriteria = RateIncreaseCriteria{NumberOfSucceededThings: 5}
	if got := rateOf(sp, 1000, 5); got != 4 {
		t.Errorf("rateOf(5 succeeded) = %v; want 4", got)
	}
}

// TestDeviceAPI follows a device through the AWS IoT Jobs operations.
func TestDeviceAPI(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	f.create(t, `{"jobId":"j1","targets":{"things":["t0","t1"]},"document":{"op":"reboot"}}`)
	f.create(t, `{"jobId":"j2","targets":{"things":["t0"]},"document":{"op":"other"}}`)
	// Before release the device sees nothing.
	a, code := f.device(t, "t0", OpGetPending, "", `{"clientToken":"c0"}`)
	if code != "" || len(a["queuedJobs"].([]any)) != 0 || a["clientToken"] != "c0" {
		t.Fatalf("get before release: %v %s", a, code)
	}
	f.svc.Tick(ctx)
	f.flush(t)
	a, _ = f.device(t, "t0", OpGetPending, "", `{"clientToken":"c1"}`)
	q := a["queuedJobs"].([]any)
	if len(q) != 2 || q[0].(map[string]any)["jobId"] != "j1" || a["clientToken"] != "c1" || a["timestamp"] == nil {
		t.Fatalf("get: %v; want j1 and j2 queued, the clientToken and a timestamp", a)
	}
	a, code = f.device(t, "t0", OpStartNext, "", `{"statusDetails":{"step":"download"},"stepTimeoutInMinutes":5,"clientToken":"c2"}`)
	ex, _ := a["execution"].(map[string]any)
	if code != "" || ex["jobId"] != "j1" || ex["status"] != "IN_PROGRESS" || ex["jobDocument"].(map[string]any)["op"] != "reboot" {
		t.Fatalf("start-next: %v %s", a, code)
	}
	version := int64(ex["versionNumber"].(float64))
	f.flush(t) // j1 is still t0's next: no second notify-next
	if _, code = f.device(t, "t0", OpUpdate, "j1", `{"status":"IN_PROGRESS","expectedVersion":1}`); code != CodeVersionMismatch {
		t.Errorf("update with a stale expectedVersion: %q; want VersionMismatch", code)
	}
	_, rej := f.svc.Device(ctx, DeviceRequest{Thing: "t0", Op: OpUpdate, JobID: "j1", Payload: []byte(`{"status":"IN_PROGRESS","expectedVersion":1,"clientToken":"c3"}`)})
	if rej.State == nil || rej.State.Status != "IN_PROGRESS" || rej.ClientToken != "c3" {
		t.Errorf("VersionMismatch rejection %+v; want the execution state and the clientToken", rej)
	}
	a, code = f.device(t, "t0", OpUpdate, "j1", `{"status":"SUCCEEDED","expectedVersion":`+itoa(version)+`,"includeJobExecutionState":true,"includeJobDocument":true,"statusDetails":{"v":"2"}}`)
	if code != "" || a["executionState"].(map[string]any)["status"] != "SUCCEEDED" || a["jobDocument"] == nil {
		t.Fatalf("update SUCCEEDED: %v %s", a, code)
	}
	f.flush(t)
	if _, code = f.device(t, "t0", OpUpdate, "j1", `{"status":"FAILED"}`); code != CodeTerminalStateReached {
		t.Errorf("update after SUCCEEDED: %q; want TerminalStateReached", code)
	}
	a, _ = f.device(t, "t0", OpDescribe, NextJobID, `{}`)
	if a["execution"].(map[string]any)["jobId"] != "j2" {
		t.Errorf("$next after j1: %v; want j2", a)
	}
	a, _ = f.device(t, "t0", OpDescribe, "j1", `{"includeJobDocument":false}`)
	if ex := a["execution"].(map[string]any); ex["status"] != "SUCCEEDED" || ex["jobDocument"] != nil {
		t.Errorf("describe j1 without document: %v", a)
	}
	for _, tc := range []struct{ thing, op, job, payload, want string }{
		{"t1", OpDescribe, "j2", `{}`, CodeResourceNotFound}, // not t1's
		{"t1", OpUpdate, "nosuch", `{"status":"SUCCEEDED"}`, CodeResourceNotFound},
		{"t1", OpUpdate, "j1", `{"status":"DONE"}`, CodeInvalidRequest},
		{"t1", OpUpdate, "j1", `{"status":`, CodeInvalidJSON},
		{"t1", OpUpdate, "j1", `{"status":"IN_PROGRESS","stepTimeoutInMinutes":0}`, CodeInvalidRequest},
		{"t1", OpUpdate, "j1", `{"status":"IN_PROGRESS","executionNumber":7}`, CodeResourceNotFound},
		{"t1", OpUpdate, NextJobID, `{"status":"IN_PROGRESS"}`, CodeInvalidRequest},
		{"t1", OpStartNext, "", `{"clientToken":"` + strings.Repeat("x", 65) + `"}`, CodeInvalidRequest},
	} {
		if _, code := f.device(t, tc.thing, tc.op, tc.job, tc.payload); code != tc.want {
			t.Errorf("%s %s %s %s: %q; want %q", tc.thing, tc.op, tc.job, tc.payload, code, tc.want)
		}
	}
	// Notifications: t0 heard of j1 and then j2 as its next job.
	nexts := f.pub.on("$aws/things/t0/jobs/notify-next")
	if len(nexts) != 2 || !strings.Contains(nexts[0], `"jobId":"j1"`) || !strings.Contains(nexts[len(nexts)-1], `"jobId":"j2"`) {
		t.Errorf("notify-next of t0: %q; want j1 then j2", nexts)
	}
	if got := f.pub.on("$mote/things/t0/jobs/notify-next"); len(got) != len(nexts) {
		t.Errorf("$mote notify-next: %d messages; want %d as under $aws", len(got), len(nexts))
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestAbort cancels the job once enough executions failed.
func TestAbort(t *testing.T) {
	f := newFixture(t, 10)
	ctx := context.Background()
	f.create(t, `{"jobId":"j","targets":{"things":`+things(10)+`},"document":{"op":"x"},
		"abort":{"criteria":[{"failureType":"FAILED","thresholdPercentage":50,"minNumberOfExecutedThings":4}]}}`)
	f.svc.Tick(ctx)
	for i, st := range []string{"FAILED", "SUCCEEDED", "FAILED"} {
		if _, code := f.device(t, "t"+itoa(int64(i)), OpUpdate, "j", `{"status":"`+st+`"}`); code != "" {
			t.Fatal(code)
		}
	}
	f.svc.Tick(ctx) // 3 executed: below the minimum
	if info, _ := f.svc.Get(ctx, "j"); info.Status != store.JobInProgress {
		t.Fatalf("aborted after 3 executions: %+v", info)
	}
	f.device(t, "t3", OpUpdate, "j", `{"status":"SUCCEEDED"}`)
	f.device(t, "t4", OpStartNext, "", `{}`) // in progress: left running (no force)
	f.svc.Tick(ctx)
	info, _ := f.svc.Get(ctx, "j")
	if info.Status != store.JobCanceled || info.ReasonCode != "ABORTED" || info.Counts["CANCELED"] != 5 || info.Counts["IN_PROGRESS"] != 1 {
		t.Fatalf("after 2 of 4 failed: %s %s %v; want CANCELED ABORTED, 5 canceled, 1 in progress", info.Status, info.ReasonCode, info.Counts)
	}
	if ev := f.pub.on(JobEventTopic("j")); len(ev) == 0 || !strings.Contains(ev[len(ev)-1], `"event":"aborted"`) {
		t.Errorf("job events %q; want an aborted event last", ev)
	}
}

// TestTimeoutAndRetry times executions out (inProgressMinutes and a step
// timer) and requeues them per the retry criteria.
func TestTimeoutAndRetry(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	f.create(t, `{"jobId":"j","targets":{"things":["t0","t1"]},"document":{"op":"x"},
		"timeouts":{"inProgressMinutes":10},"retry":{"criteria":[{"failureType":"TIMED_OUT","numberOfRetries":1}]}}`)
	f.svc.Tick(ctx)
	f.device(t, "t0", OpStartNext, "", `{}`)
	f.device(t, "t1", OpStartNext, "", `{"stepTimeoutInMinutes":2}`)
	f.clk.Add(3 * time.Minute)
	f.svc.Tick(ctx)
	x, _ := f.st.Jobs().Execution(ctx, "j", "t1")
	if x.Status != "QUEUED" || x.ExecutionNumber != 2 || x.Retries != 1 {
		t.Fatalf("t1 after its step timer: %+v; want QUEUED again as execution 2", x)
	}
	if x, _ := f.st.Jobs().Execution(ctx, "j", "t0"); x.Status != "IN_PROGRESS" {
		t.Fatalf("t0 after 3 of 10 minutes: %s", x.Status)
	}
	f.clk.Add(8 * time.Minute)
	f.svc.Tick(ctx)
	x, _ = f.st.Jobs().Execution(ctx, "j", "t0")
	if x.Status != "QUEUED" || x.ExecutionNumber != 2 {
		t.Fatalf("t0 after inProgressMinutes: %+v; want requeued", x)
	}
	f.device(t, "t0", OpStartNext, "", `{}`)
	f.clk.Add(11 * time.Minute)
	f.svc.Tick(ctx)
	x, _ = f.st.Jobs().Execution(ctx, "j", "t0")
	if x.Status != "TIMED_OUT" {
		t.Fatalf("t0 after its last retry timed out: %s; want TIMED_OUT", x.Status)
	}
	if _, code := f.device(t, "t0", OpUpdate, "j", `{"status":"SUCCEEDED"}`); code != CodeTerminalStateReached {
		t.Errorf("update of a timed-out execution: %q", code)
	}
}

// TestCancelForce cancels a job: without force an execution in progress
// goes on; with force it is canceled and the device is refused.
func TestCancelForce(t *testing.T) {
	f := newFixture(t, 3)
	ctx := context.Background()
	f.create(t, `{"jobId":"a","targets":{"things":["t0","t1"]},"document":{"op":"x"}}`)
	f.create(t, `{"jobId":"b","targets":{"things":["t2"]},"document":{"op":"x"}}`)
	f.svc.Tick(ctx)
	f.device(t, "t0", OpStartNext, "", `{}`)
	f.device(t, "t2", OpStartNext, "", `{}`)
	info, err := f.svc.Cancel(ctx, "a", false, "operator", "stop")
	if err != nil {
		t.Fatal(err)
	}
	if info.Counts["IN_PROGRESS"] != 1 || info.Counts["CANCELED"] != 1 || info.Comment != "stop" {
		t.Fatalf("cancel without force: %v", info.Counts)
	}
	if _, code := f.device(t, "t0", OpUpdate, "a", `{"status":"SUCCEEDED"}`); code != "" {
		t.Errorf("finishing an execution of a canceled job: %q; want accepted", code)
	}
	if _, err := f.svc.Cancel(ctx, "a", true, "", ""); core.KindOf(err) != core.KindConflict {
		t.Errorf("canceling a canceled job: %v; want a conflict", err)
	}
	if err := f.svc.Delete(ctx, "b", false); core.KindOf(err) != core.KindConflict {
		t.Errorf("deleting a job in progress without force: %v; want a conflict", err)
	}
	info, err = f.svc.Cancel(ctx, "b", true, "", "")
	if err != nil || info.Counts["CANCELED"] != 1 {
		t.Fatalf("cancel with force: %v %v", info.Counts, err)
	}
	if _, code := f.device(t, "t2", OpUpdate, "b", `{"status":"SUCCEEDED"}`); code != CodeTerminalStateReached {
		t.Errorf("update after a forced cancel: %q; want TerminalStateReached", code)
	}
	if err := f.svc.Delete(ctx, "b", false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Get(ctx, "b"); !core.IsNotFound(err) {
		t.Errorf("Get after Delete: %v", err)
	}
}

// TestContinuous adds things that join a target group later, and
// removes queued executions of things that leave it.
func TestContinuous(t *testing.T) {
	f := newFixture(t, 3)
	ctx := context.Background()
	if _, err := f.st.Groups().Create(ctx, store.Group{Name: "g"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.Things().Update(ctx, "t0", store.ThingPatch{Groups: []string{"g"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Create(ctx, Spec{JobID: "c", Targets: Targets{Groups: []string{"g"}}, Document: json.RawMessage(`{}`), TargetSelection: Continuous}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Create(ctx, Spec{JobID: "s", Targets: Targets{Groups: []string{"g"}}, Document: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.Things().Update(ctx, "t1", store.ThingPatch{Groups: []string{"g"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.membership(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	f.svc.Tick(ctx)
	if c := f.counts(t, "c"); c["QUEUED"] != 2 {
		t.Fatalf("continuous job after t1 joined: %v; want 2 QUEUED", c)
	}
	if c := f.counts(t, "s"); c["QUEUED"] != 1 {
		t.Fatalf("snapshot job after t1 joined: %v; want 1 (t0 only)", c)
	}
	if _, err := f.st.Things().Update(ctx, "t1", store.ThingPatch{Groups: []string{}}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.membership(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if x, _ := f.st.Jobs().Execution(ctx, "c", "t1"); x.Status != store.JobExecRemoved {
		t.Fatalf("t1 after leaving: %s; want REMOVED", x.Status)
	}
	// A continuous job may start with no thing; a snapshot job may not.
	if _, err := f.svc.Create(ctx, Spec{JobID: "empty", Targets: Targets{Groups: []string{"nobody"}}, Document: json.RawMessage(`{}`)}); core.KindOf(err) != core.KindInvalid {
		t.Errorf("a snapshot job over no thing: %v; want invalid", err)
	}
}

// TestCreateRefuses checks what Create refuses beyond the spec's syntax.
func TestCreateRefuses(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		spec Spec
		kind core.Kind
		msg  string
	}{
		{"missing thing", Spec{JobID: "a", Targets: Targets{Things: []string{"t0", "nosuch"}}, Document: json.RawMessage(`{}`)}, core.KindInvalid, `"nosuch"`},
		{"query without the index", Spec{JobID: "a", Targets: Targets{Query: "type = 'x'"}, Document: json.RawMessage(`{}`)}, core.KindInvalid, "fleet index"},
		{"artifact without the store", Spec{JobID: "a", Targets: Targets{Things: []string{"t0"}}, DocumentSource: "artifact:fw"}, core.KindInvalid, "artifact store"},
	} {
		if _, err := f.svc.Create(ctx, tc.spec); core.KindOf(err) != tc.kind || err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v; want a %s error naming %s", tc.name, err, tc.kind, tc.msg)
		}
	}
	f.svc.opts.MaxTargets = 1
	if _, err := f.svc.Create(ctx, Spec{JobID: "a", Targets: Targets{Things: []string{"t0", "t1"}}, Document: json.RawMessage(`{}`)}); core.KindOf(err) != core.KindTooLarge {
		t.Errorf("over --job-max-targets: %v; want too large", err)
	}
	f.create(t, `{"jobId":"dup","targets":{"things":["t0"]},"document":{}}`)
	if _, err := f.svc.Create(ctx, Spec{JobID: "dup", Targets: Targets{Things: []string{"t0"}}, Document: json.RawMessage(`{}`)}); core.KindOf(err) != core.KindConflict {
		t.Errorf("duplicate jobId: %v; want a conflict", err)
	}
}
