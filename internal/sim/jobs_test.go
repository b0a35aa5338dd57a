package sim_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/sim"
)

// TestSimulatorRunsJobs: simulated devices take an OTA job, download the
// image and check its sha256, report their new firmware, and fail a job
// whose image does not match.
func TestSimulatorRunsJobs(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) { c.JobSchedulerTick = 20 * time.Millisecond })
	ctx := context.Background()
	c := apiclient.New(s.API, s.Token)
	ids, _, err := sim.Provision(ctx, c, sim.ProvisionOptions{Devices: 3})
	if err != nil {
		t.Fatal(err)
	}
	image := []byte("firmware image 2.0.0")
	sum := sha256.Sum256(image)
	var downloads atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		downloads.Add(1)
		w.Write(image)
	}))
	defer srv.Close()
	startFleet(t, s, ids, 1)

	create := func(id, sha string) {
		t.Helper()
		doc, _ := json.Marshal(map[string]any{"operation": "ota", "url": srv.URL + "/fw.bin", "sha256": sha, "version": "2.0.0-" + id})
		spec, _ := json.Marshal(map[string]any{"jobId": id, "targets": map[string]any{"groups": []string{sim.DefaultGroup}}, "document": json.RawMessage(doc)})
		if _, err := c.CreateJob(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	done := func(id string, status string) {
		t.Helper()
		daemontest.WaitFor(t, wait, func() error {
			j, err := c.GetJob(ctx, id)
			if err != nil {
				return err
			}
			if j.Status != "COMPLETED" || j.Counts[status] != len(ids) {
				return fmt.Errorf("job %s: %s %v; want COMPLETED with every execution %s", id, j.Status, j.Counts, status)
			}
			return nil
		})
	}
	create("ota-1", hex.EncodeToString(sum[:]))
	done("ota-1", "SUCCEEDED")
	for _, id := range ids {
		daemontest.WaitFor(t, wait, func() error {
			rep, _, err := reported(ctx, c, id.Thing)
			if err != nil {
				return err
			}
			if rep["firmware"] != "2.0.0-ota-1" {
				return fmt.Errorf("%s reports firmware %v", id.Thing, rep["firmware"])
			}
			return nil
		})
	}
	create("ota-2", hex.EncodeToString(make([]byte, 32))) // wrong sha256
	done("ota-2", "FAILED")
	execs, _, err := c.ListJobExecutions(ctx, "ota-2", apiclient.ListOptions{})
	if err != nil || len(execs) != len(ids) || execs[0].StatusDetails["reason"] != "sha256 mismatch" {
		t.Fatalf("ota-2 executions %+v %v; want FAILED with reason sha256 mismatch", execs, err)
	}
	if n := downloads.Load(); n < int64(2*len(ids)) {
		t.Errorf("%d downloads; want one per device per job", n)
	}
}

func TestOTAFailureRateOption(t *testing.T) {
	if _, err := sim.NewFleet(nil, sim.Options{MQTTAddr: "x:1", OTAFailureRate: 1.5}); err == nil {
		t.Error("NewFleet accepted --ota-failure-rate 1.5")
	}
}
