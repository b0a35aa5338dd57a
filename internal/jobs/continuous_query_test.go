package jobs_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/daemontest"
)

// TestContinuousQueryTarget: a continuous job whose target is a bare
// fleet query picks up a thing that matches only later (its reported
// shadow changes), and drops a scheduled one that stops matching; a
// snapshot job over the same query does not pick it up.
func TestContinuousQueryTarget(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	for _, n := range []string{"a", "b"} {
		if code, body := api(t, s, "POST", "/things", `{"name":"`+n+`","attributes":{"site":"ams"}}`); code != 201 {
			t.Fatalf("POST /things: %d %s", code, body)
		}
	}
	if code, body := api(t, s, "POST", "/things/a/shadows/classic", `{"state":{"reported":{"fw":"1.0"}}}`); code != 200 {
		t.Fatalf("shadow a: %d %s", code, body)
	}
	q := `attributes.site = 'ams' AND version(shadow.reported.fw) < '2'`
	// The index sees a's report off the publish path.
	daemontest.WaitFor(t, wait, func() error {
		if code, body := api(t, s, "GET", "/things:count?q="+url.QueryEscape(q), ""); code != 200 || strings.TrimSpace(body) != `{"count":1}` {
			return fmt.Errorf("count: %d %s", code, body)
		}
		return nil
	})
	if code, body := api(t, s, "POST", "/jobs", `{"jobId":"cont","targets":{"query":"`+q+`"},"document":{},"targetSelection":"continuous","rollout":{"maximumPerMinute":1}}`); code != 201 {
		t.Fatalf("continuous job: %d %s", code, body)
	}
	if code, body := api(t, s, "POST", "/jobs", `{"jobId":"snap","targets":{"query":"`+q+`"},"document":{}}`); code != 201 {
		t.Fatalf("snapshot job: %d %s", code, body)
	}
	// b starts to match by reporting an old firmware: the continuous job
	// gets an execution for it.
	if code, body := api(t, s, "POST", "/things/b/shadows/classic", `{"state":{"reported":{"fw":"1.5"}}}`); code != 200 {
		t.Fatalf("shadow b: %d %s", code, body)
	}
	total := func(c map[string]int) int {
		n := 0
		for _, v := range c {
			n += v
		}
		return n
	}
	daemontest.WaitFor(t, wait, func() error {
		if j := getJob(t, s, "cont"); total(j.Counts) != 2 {
			return fmt.Errorf("continuous job %+v; want 2 executions (a, b)", j)
		}
		return nil
	})
	// b moves on before its execution is released (1 per minute): it is
	// removed from the job.
	if code, body := api(t, s, "POST", "/things/b/shadows/classic", `{"state":{"reported":{"fw":"2.1"}}}`); code != 200 {
		t.Fatalf("shadow b: %d %s", code, body)
	}
	daemontest.WaitFor(t, wait, func() error {
		if j := getJob(t, s, "cont"); j.Counts["REMOVED"] != 1 {
			return fmt.Errorf("continuous job %+v; want b REMOVED", j)
		}
		return nil
	})
	if j := getJob(t, s, "snap"); total(j.Counts) != 1 {
		t.Errorf("snapshot job %+v; want a alone", j)
	}
}

// TestContinuousDynamicGroupTarget: a continuous job over a dynamic group
// picks up a thing that joins the group later (its reported firmware
// starts to match the group's query) and drops one that leaves before its
// execution is released.
func TestContinuousDynamicGroupTarget(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	for _, n := range []string{"a", "b"} {
		if code, body := api(t, s, "POST", "/things", `{"name":"`+n+`"}`); code != 201 {
			t.Fatalf("POST /things: %d %s", code, body)
		}
	}
	if code, body := api(t, s, "POST", "/things/a/shadows/classic", `{"state":{"reported":{"fw":"1.0"}}}`); code != 200 {
		t.Fatalf("shadow a: %d %s", code, body)
	}
	if code, body := api(t, s, "POST", "/groups", `{"name":"old-fw","query":"version(shadow.reported.fw) < '2'"}`); code != 201 {
		t.Fatalf("dynamic group: %d %s", code, body)
	}
	daemontest.WaitFor(t, wait, func() error {
		if code, body := api(t, s, "GET", "/groups/old-fw/things", ""); code != 200 || !strings.Contains(body, `"a"`) {
			return fmt.Errorf("members: %d %s", code, body)
		}
		return nil
	})
	if code, body := api(t, s, "POST", "/jobs", `{"jobId":"cont","targets":{"groups":["old-fw"]},"document":{},"targetSelection":"continuous","rollout":{"maximumPerMinute":1}}`); code != 201 {
		t.Fatalf("continuous job: %d %s", code, body)
	}
	count := func() map[string]int { return getJob(t, s, "cont").Counts }
	// b joins the group by reporting an old firmware.
	if code, body := api(t, s, "POST", "/things/b/shadows/classic", `{"state":{"reported":{"fw":"1.5"}}}`); code != 200 {
		t.Fatalf("shadow b: %d %s", code, body)
	}
	daemontest.WaitFor(t, wait, func() error {
		n := 0
		for _, v := range count() {
			n += v
		}
		if n != 2 {
			return fmt.Errorf("continuous job counts %v; want 2 executions (a, b)", count())
		}
		return nil
	})
	// b leaves the group before its execution is released: removed.
	if code, body := api(t, s, "POST", "/things/b/shadows/classic", `{"state":{"reported":{"fw":"2.1"}}}`); code != 200 {
		t.Fatalf("shadow b: %d %s", code, body)
	}
	daemontest.WaitFor(t, wait, func() error {
		if c := count(); c["REMOVED"] != 1 {
			return fmt.Errorf("continuous job counts %v; want b REMOVED", c)
		}
		return nil
	})
}
