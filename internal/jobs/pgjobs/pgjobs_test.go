// Package pgjobs_test runs jobs end to end on the PostgreSQL store: a
// rollout restarted midway and a device finishing its execution over the
// HTTP device API. (A package of its own so that the jobs unit tests do
// not start a PostgreSQL cluster.)
package pgjobs_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func do(t *testing.T, method, url, authz, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
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

type job struct {
	Status   string         `json:"status"`
	Released int64          `json:"released"`
	Counts   map[string]int `json:"counts"`
}

func TestJobsOnPostgres(t *testing.T) {
	url := pgtest.DB(t)
	s := daemontest.Start(t, daemontest.WithStore(url), func(c *config.Config) { c.JobSchedulerTick = 20 * time.Millisecond })
	admin := func(method, path, body string) (int, string) {
		return do(t, method, s.API+"/api/v1"+path, "Bearer "+s.Token, body)
	}
	get := func() job {
		code, body := admin("GET", "/jobs/pg", "")
		var j job
		if code != 200 || json.Unmarshal([]byte(body), &j) != nil {
			t.Fatalf("GET /jobs/pg: %d %s", code, body)
		}
		return j
	}
	var names []string
	for i := range 8 {
		names = append(names, fmt.Sprintf(`"p%d"`, i))
		s.Thing(t, fmt.Sprintf("p%d", i))
	}
	secret := s.Device(t, "dev")
	names = append(names, `"dev"`)
	if code, body := admin("POST", "/jobs", `{"jobId":"pg","targets":{"things":[`+strings.Join(names, ",")+`]},"document":{"op":"x"},"rollout":{"maximumPerMinute":600}}`); code != 201 {
		t.Fatalf("POST /jobs: %d %s", code, body)
	}
	daemontest.WaitFor(t, 10*time.Second, func() error {
		if j := get(); j.Released < 2 {
			return fmt.Errorf("released %d", j.Released)
		}
		return nil
	})
	s.Restart(t)
	daemontest.WaitFor(t, 30*time.Second, func() error {
		if j := get(); j.Counts["QUEUED"] != 9 {
			return fmt.Errorf("counts %v", j.Counts)
		}
		return nil
	})
	if j := get(); j.Released != 9 {
		t.Errorf("released %d after the restart; want 9 (each once)", j.Released)
	}
	dev := "Bearer " + secret
	if code, body := do(t, "POST", s.API+"/api/v1/devices/dev/jobs/start-next", dev, `{"clientToken":"x"}`); code != 200 || !strings.Contains(body, `"IN_PROGRESS"`) {
		t.Fatalf("start-next: %d %s", code, body)
	}
	if code, body := do(t, "POST", s.API+"/api/v1/devices/dev/jobs/pg/update", dev, `{"status":"SUCCEEDED","includeJobExecutionState":true}`); code != 200 || !strings.Contains(body, `"SUCCEEDED"`) {
		t.Fatalf("update: %d %s", code, body)
	}
	if j := get(); j.Counts["SUCCEEDED"] != 1 {
		t.Errorf("counts %v; want 1 SUCCEEDED", j.Counts)
	}
}
