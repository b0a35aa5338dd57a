package jobs_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
)

const wait = 10 * time.Second

func fastTick(c *config.Config) { c.JobSchedulerTick = 20 * time.Millisecond }

// api sends a REST request with the admin token and returns the status
// and body.
func api(t *testing.T, s *daemontest.Server, method, path, body string) (int, string) {
	t.Helper()
	return do(t, method, s.API+"/api/v1"+path, "Bearer "+s.Token, body)
}

func do(t *testing.T, method, url, authz, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", authz)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitMsg waits for a message on topic whose payload contains want.
func waitMsg(t *testing.T, in *daemontest.Inbox, topic, want string) map[string]any {
	t.Helper()
	var found map[string]any
	daemontest.WaitFor(t, wait, func() error {
		for _, m := range in.All() {
			if m.Topic == topic && strings.Contains(m.Payload, want) {
				if err := json.Unmarshal([]byte(m.Payload), &found); err != nil {
					return err
				}
				return nil
			}
		}
		return fmt.Errorf("no message on %s containing %s", topic, want)
	})
	return found
}

type jobJSON struct {
	JobID    string         `json:"jobId"`
	Status   string         `json:"status"`
	Released int64          `json:"released"`
	Counts   map[string]int `json:"counts"`
}

func getJob(t *testing.T, s *daemontest.Server, id string) jobJSON {
	t.Helper()
	code, body := api(t, s, "GET", "/jobs/"+id, "")
	if code != 200 {
		t.Fatalf("GET /jobs/%s: %d %s", id, code, body)
	}
	var j jobJSON
	if err := json.Unmarshal([]byte(body), &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// TestAWSJobsOverMQTT follows the AWS IoT Jobs device topics end to end
// with paho clients, the same API under $mote and over HTTP, and checks
// that a thing cannot touch another thing's executions.
func TestAWSJobsOverMQTT(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t, fastTick)
	sec1, sec2 := s.Device(t, "dev1"), s.Device(t, "dev2")
	d1 := s.V5(t, "dev1", sec1)
	if rc := d1.Sub(t, "$aws/things/dev1/jobs/#"); rc > 2 {
		t.Fatalf("subscribe to its own jobs topics: reason %#x", rc)
	}
	d2 := s.V5(t, "dev2", sec2)
	if rc := d2.Sub(t, "$aws/things/dev1/jobs/#"); rc < 0x80 {
		t.Fatalf("dev2 subscribed to dev1's jobs topics: reason %#x; want a refusal", rc)
	}
	d2.Sub(t, "$mote/things/dev2/jobs/#")

	code, body := api(t, s, "POST", "/jobs", `{"jobId":"fw-1","description":"firmware","targets":{"things":["dev1","dev2"]},"document":{"operation":"reboot"}}`)
	if code != 201 {
		t.Fatalf("POST /jobs: %d %s", code, body)
	}
	next := waitMsg(t, d1.Inbox, "$aws/things/dev1/jobs/notify-next", `"fw-1"`)
	if ex := next["execution"].(map[string]any); ex["status"] != "QUEUED" || ex["jobDocument"].(map[string]any)["operation"] != "reboot" {
		t.Fatalf("notify-next: %v", next)
	}
	waitMsg(t, d1.Inbox, "$aws/things/dev1/jobs/notify", `"QUEUED"`)

	d1.Pub(t, "$aws/things/dev1/jobs/get", 1, false, `{"clientToken":"g1"}`)
	got := waitMsg(t, d1.Inbox, "$aws/things/dev1/jobs/get/accepted", `"g1"`)
	if q := got["queuedJobs"].([]any); len(q) != 1 || q[0].(map[string]any)["jobId"] != "fw-1" {
		t.Fatalf("get/accepted: %v", got)
	}
	d1.Pub(t, "$aws/things/dev1/jobs/start-next", 1, false, `{"clientToken":"s1","statusDetails":{"step":"download"}}`)
	started := waitMsg(t, d1.Inbox, "$aws/things/dev1/jobs/start-next/accepted", `"s1"`)
	ex := started["execution"].(map[string]any)
	if ex["status"] != "IN_PROGRESS" || ex["thingName"] != "dev1" {
		t.Fatalf("start-next/accepted: %v", started)
	}

	// dev2 may not update dev1's execution: its policy refuses the
	// publish, and the execution is unchanged.
	if rc := d2.Pub(t, "$aws/things/dev1/jobs/fw-1/update", 1, false, `{"status":"FAILED"}`); rc != 0x87 {
		t.Errorf("dev2 publishing an update of dev1's execution: reason %#x; want 0x87 not authorized", rc)
	}
	d1.Pub(t, "$aws/things/dev1/jobs/fw-1/update", 1, false, `{"status":"SUCCEEDED","expectedVersion":99,"clientToken":"u0"}`)
	rej := waitMsg(t, d1.Inbox, "$aws/things/dev1/jobs/fw-1/update/rejected", `"u0"`)
	if rej["code"] != "VersionMismatch" || rej["executionState"].(map[string]any)["status"] != "IN_PROGRESS" {
		t.Fatalf("update with a wrong expectedVersion: %v; want VersionMismatch with dev1's execution still IN_PROGRESS", rej)
	}
	d1.Pub(t, "$aws/things/dev1/jobs/fw-1/update", 1, false, fmt.Sprintf(`{"status":"SUCCEEDED","expectedVersion":%v,"includeJobExecutionState":true,"clientToken":"u1"}`, ex["versionNumber"]))
	acc := waitMsg(t, d1.Inbox, "$aws/things/dev1/jobs/fw-1/update/accepted", `"u1"`)
	if acc["executionState"].(map[string]any)["status"] != "SUCCEEDED" {
		t.Fatalf("update/accepted: %v", acc)
	}
	d1.Pub(t, "$aws/things/dev1/jobs/$next/get", 1, false, `{"clientToken":"n1"}`)
	if n := waitMsg(t, d1.Inbox, "$aws/things/dev1/jobs/$next/get/accepted", `"n1"`); n["execution"] != nil {
		t.Errorf("$next after the only job: %v; want no execution", n)
	}

	// dev2 under $mote, then over the HTTP device API.
	d2.Pub(t, "$mote/things/dev2/jobs/start-next", 1, false, `{"clientToken":"m1"}`)
	m := waitMsg(t, d2.Inbox, "$mote/things/dev2/jobs/start-next/accepted", `"m1"`)
	if m["execution"].(map[string]any)["jobId"] != "fw-1" {
		t.Fatalf("$mote start-next: %v", m)
	}
	dev2 := "Bearer " + sec2
	if code, body := do(t, "GET", s.API+"/api/v1/devices/dev2/jobs", dev2, ""); code != 200 || !strings.Contains(body, `"inProgressJobs":[{"jobId":"fw-1"`) {
		t.Fatalf("HTTP get pending: %d %s", code, body)
	}
	if code, body := do(t, "POST", s.API+"/api/v1/devices/dev1/jobs/fw-1/update", dev2, `{"status":"FAILED"}`); code != 403 && code != 401 {
		t.Errorf("dev2 updating dev1's execution over HTTP: %d %s; want 401/403", code, body)
	}
	if code, body := do(t, "POST", s.API+"/api/v1/devices/dev2/jobs/fw-1/update", dev2, `{"status":"FAILED","expectedVersion":1}`); code != 409 || !strings.Contains(body, "VersionMismatch") {
		t.Errorf("HTTP update with a wrong version: %d %s; want 409 VersionMismatch", code, body)
	}
	if code, body := do(t, "POST", s.API+"/api/v1/devices/dev2/jobs/fw-1/update", dev2, `{"status":"FAILED","statusDetails":{"reason":"disk"}}`); code != 200 {
		t.Fatalf("HTTP update: %d %s", code, body)
	}
	if code, body := do(t, "GET", s.API+"/api/v1/devices/dev2/jobs/fw-1?includeJobDocument=false", dev2, ""); code != 200 || !strings.Contains(body, `"status":"FAILED"`) {
		t.Fatalf("HTTP describe: %d %s", code, body)
	}

	daemontest.WaitFor(t, wait, func() error {
		if j := getJob(t, s, "fw-1"); j.Status != "COMPLETED" || j.Counts["SUCCEEDED"] != 1 || j.Counts["FAILED"] != 1 {
			return fmt.Errorf("job %+v; want COMPLETED with 1 SUCCEEDED, 1 FAILED", j)
		}
		return nil
	})
	if code, body := api(t, s, "GET", "/things/dev1/jobs", ""); code != 200 || !strings.Contains(body, `"status":"SUCCEEDED"`) {
		t.Errorf("GET /things/dev1/jobs: %d %s", code, body)
	}
	if code, body := api(t, s, "GET", "/jobs/fw-1/executions?limit=1", ""); code != 200 || !strings.Contains(body, `"thingName":"dev1"`) || !strings.Contains(body, `"nextCursor":"dev1"`) {
		t.Errorf("GET /jobs/fw-1/executions: %d %s", code, body)
	}
}

// TestJobRequestsRefused checks the REST API's refusals.
func TestJobRequestsRefused(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t, fastTick)
	s.Thing(t, "a")
	for _, tc := range []struct {
		body string
		code int
		want string
	}{
		{`{"jobId":"x","targets":{"things":["a"]},"document":{},"bogus":1}`, 400, "bogus"},
		{`{"jobId":"x","targets":{"things":["a"],"tags":["t"]},"document":{}}`, 400, "tags"},
		{`{"jobId":"x","targets":{"things":["nosuch"]},"document":{}}`, 400, "nosuch"},
		{`{"jobId":"x","targets":{"groups":["nogroup"]},"document":{}}`, 400, "match no thing"},
		{`{"jobId":"x","targets":{"query":"attributes.site = 'nowhere'"},"document":{}}`, 400, "match no thing"},
		{`{"jobId":"x","targets":{"query":"connected = = true"},"document":{}}`, 400, "1:13"},
		{`{"jobId":"x","targets":{"things":["a"]},"document":[1]}`, 400, "document"},
		{`{"jobId":"x","targets":{"things":["a"]},"document":{"a":"` + strings.Repeat("x", 40_000) + `"}}`, 413, "document"},
		{`{"jobId":"x y","targets":{"things":["a"]},"document":{}}`, 400, "jobId"},
		{`{"jobId":"x","targets":{"things":["a"]},"document":{},"rollout":{"maximumPerMinute":5000}}`, 400, "maximumPerMinute"},
		{`{"jobId":"x","targets":{"things":["a"]},"document":{},"abort":{"criteria":[{"failureType":"NOPE","thresholdPercentage":5,"minNumberOfExecutedThings":1}]}}`, 400, "failureType"},
	} {
		if code, body := api(t, s, "POST", "/jobs", tc.body); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("POST /jobs %.80s: %d %s; want %d naming %s", tc.body, code, body, tc.code, tc.want)
		}
	}
	if code, body := api(t, s, "GET", "/jobs/nosuch", ""); code != 404 {
		t.Errorf("GET /jobs/nosuch: %d %s", code, body)
	}
	if code, body := api(t, s, "POST", "/jobs/nosuch/cancel", ""); code != 404 {
		t.Errorf("cancel nosuch: %d %s", code, body)
	}
	if code, _ := api(t, s, "POST", "/jobs", `{"jobId":"ok","targets":{"things":["a"]},"document":{}}`); code != 201 {
		t.Fatal(code)
	}
	if code, body := api(t, s, "DELETE", "/jobs/ok", ""); code != 409 {
		t.Errorf("DELETE a job in progress: %d %s; want 409", code, body)
	}
	if code, body := api(t, s, "POST", "/jobs/ok/cancel", `{"force":true,"comment":"no"}`); code != 200 || !strings.Contains(body, `"CANCELED"`) {
		t.Errorf("cancel: %d %s", code, body)
	}
	if code, body := api(t, s, "DELETE", "/jobs/ok", ""); code != 204 {
		t.Errorf("DELETE a canceled job: %d %s", code, body)
	}
	if code, body := api(t, s, "GET", "/jobs", ""); code != 200 || !strings.Contains(body, `"items":[]`) {
		t.Errorf("GET /jobs after delete: %d %s", code, body)
	}

	// A continuous job picks up a thing created in its group and one
	// moved into it.
	if code, body := api(t, s, "POST", "/groups", `{"name":"g"}`); code != 201 {
		t.Fatalf("POST /groups: %d %s", code, body)
	}
	if code, body := api(t, s, "POST", "/jobs", `{"jobId":"cont","targets":{"groups":["g"]},"document":{},"targetSelection":"continuous"}`); code != 201 {
		t.Fatalf("continuous job over an empty group: %d %s", code, body)
	}
	if code, body := api(t, s, "POST", "/things", `{"name":"late","groups":["g"]}`); code != 201 {
		t.Fatalf("POST /things: %d %s", code, body)
	}
	if code, body := api(t, s, "PATCH", "/things/a", `{"groups":["g"]}`); code != 200 {
		t.Fatalf("PATCH /things/a: %d %s", code, body)
	}
	daemontest.WaitFor(t, wait, func() error {
		if j := getJob(t, s, "cont"); j.Counts["QUEUED"] != 2 {
			return fmt.Errorf("continuous job %+v; want 2 QUEUED (late, a)", j)
		}
		return nil
	})
}

// TestRestartMidRollout restarts the server while a rollout is paced:
// the job resumes, every execution is released exactly once, and no more
// than the rate allows.
func TestRestartMidRollout(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t, fastTick)
	var names []string
	for i := range 12 {
		n := fmt.Sprintf("r%d", i)
		s.Thing(t, n)
		names = append(names, `"`+n+`"`)
	}
	start := time.Now()
	code, body := api(t, s, "POST", "/jobs", `{"jobId":"slow","targets":{"things":[`+strings.Join(names, ",")+`]},"document":{},"rollout":{"maximumPerMinute":600}}`)
	if code != 201 {
		t.Fatalf("POST /jobs: %d %s", code, body)
	}
	daemontest.WaitFor(t, wait, func() error {
		if j := getJob(t, s, "slow"); j.Released < 3 {
			return fmt.Errorf("released %d", j.Released)
		}
		return nil
	})
	s.Restart(t)
	daemontest.WaitFor(t, 3*wait, func() error {
		if j := getJob(t, s, "slow"); j.Counts["QUEUED"] != 12 {
			return fmt.Errorf("counts %v", j.Counts)
		}
		return nil
	})
	j := getJob(t, s, "slow")
	if j.Released != 12 || j.Counts["SCHEDULED"] != 0 {
		t.Errorf("after the rollout: released %d, counts %v; want 12 released once each", j.Released, j.Counts)
	}
	// 600/min is one every 100ms (the first at once): never faster.
	if min := time.Duration(11) * 100 * time.Millisecond; time.Since(start) < min {
		t.Errorf("12 released in %v; the rate allows no less than %v", time.Since(start), min)
	}
	code, body = api(t, s, "GET", "/jobs/slow/executions", "")
	var list struct {
		Items []struct {
			VersionNumber int64 `json:"versionNumber"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil || code != 200 || len(list.Items) != 12 {
		t.Fatalf("executions: %d %s", code, body)
	}
	for i, x := range list.Items {
		if x.VersionNumber != 2 {
			t.Errorf("execution %d: version %d; want 2 (released exactly once)", i, x.VersionNumber)
		}
	}
}

// TestDynamicGroupTarget: a job whose target is a dynamic group gets one
// execution per member of the group (its query's things), not none
// because no thing lists the group.
func TestDynamicGroupTarget(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t, fastTick)
	for _, n := range []string{"dyn-1", "dyn-2", "other-1"} {
		s.Thing(t, n)
	}
	if code, body := api(t, s, "POST", "/groups", `{"name":"dyn","query":"name LIKE 'dyn-*'"}`); code != 201 {
		t.Fatalf("POST /groups: %d %s", code, body)
	}
	daemontest.WaitFor(t, wait, func() error {
		if code, body := api(t, s, "GET", "/groups/dyn/things", ""); code != 200 || !strings.Contains(body, `"total":2`) {
			return fmt.Errorf("GET /groups/dyn/things: %d %s", code, body)
		}
		return nil
	})
	if code, body := api(t, s, "POST", "/jobs", `{"jobId":"dyn-job","targets":{"groups":["dyn"]},"document":{}}`); code != 201 {
		t.Fatalf("POST /jobs: %d %s", code, body)
	}
	code, body := api(t, s, "GET", "/jobs/dyn-job/executions", "")
	if code != 200 || !strings.Contains(body, `"dyn-1"`) || !strings.Contains(body, `"dyn-2"`) || strings.Contains(body, "other-1") {
		t.Fatalf("executions: %d %s; want dyn-1 and dyn-2 only", code, body)
	}
	if j := getJob(t, s, "dyn-job"); j.Counts["QUEUED"]+j.Counts["SCHEDULED"] != 2 {
		t.Errorf("counts %v; want 2 executions", j.Counts)
	}
}
