package jobs

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/moteiot/mote/internal/core"
)

// TestFloodIsThrottled fills the request queue: the requests beyond it
// are answered RequestThrottled (with their clientToken), off the
// publisher's goroutine, and counted.
func TestFloodIsThrottled(t *testing.T) {
	f := newFixture(t, 1)
	svc := New(Options{Store: f.st.Jobs(), Things: storeThings{f.st}, Publisher: f.pub, Now: f.clk.Now, QueueSize: 2, Workers: 2})
	for i := range 5 {
		svc.HandleMessage(core.Message{Topic: "$aws/things/t0/jobs/get", Thing: "t0", Payload: []byte(`{"clientToken":"c` + itoa(int64(i)) + `"}`)})
	}
	if got := value(svc.m.dropped.WithLabelValues("queue_full")); got != 4 {
		t.Fatalf("queue_full = %v; want 4 (one slot per worker, both on t0's shard)", got)
	}
	// The rejections are answered by the reject loop.
	msg := <-svc.rejects
	svc.answer(msg, nil, &Rejection{Code: CodeRequestThrottled, Message: "x", ClientToken: clientTokenOf(msg.req.Payload)})
	got := f.pub.on("$aws/things/t0/jobs/get/rejected")
	if len(got) != 1 || !strings.Contains(got[0], `"code":"RequestThrottled"`) || !strings.Contains(got[0], `"clientToken":"c1"`) {
		t.Fatalf("rejection %q; want RequestThrottled with clientToken c1", got)
	}
	// Another thing's topic and the platform's own messages are no requests.
	svc.HandleMessage(core.Message{Topic: "$aws/things/t0/jobs/get", Thing: "intruder"})
	svc.HandleMessage(core.Message{Topic: "$aws/things/t0/jobs/get/accepted"})
	if got := value(svc.m.dropped.WithLabelValues("wrong_thing")); got != 1 {
		t.Errorf("wrong_thing = %v; want 1", got)
	}
}

// TestDeadStore: with the store gone, device requests are rejected
// InternalError and the scheduler keeps going.
func TestDeadStore(t *testing.T) {
	f := newFixture(t, 1)
	f.create(t, `{"jobId":"j","targets":{"things":["t0"]},"document":{}}`)
	f.svc.Tick(context.Background())
	f.st.Close()
	if _, code := f.device(t, "t0", OpStartNext, "", `{"clientToken":"x"}`); code != CodeInternalError {
		t.Errorf("start-next on a closed store: %q; want InternalError", code)
	}
	f.svc.Tick(context.Background()) // logs, does not panic
}

// TestHugeRequests: oversized fields are refused, never stored.
func TestHugeRequests(t *testing.T) {
	f := newFixture(t, 1)
	f.create(t, `{"jobId":"j","targets":{"things":["t0"]},"document":{}}`)
	f.svc.Tick(context.Background())
	details := map[string]string{}
	for i := range 11 {
		details["k"+itoa(int64(i))] = "v"
	}
	b, _ := json.Marshal(map[string]any{"status": "IN_PROGRESS", "statusDetails": details})
	if _, code := f.device(t, "t0", OpUpdate, "j", string(b)); code != CodeInvalidRequest {
		t.Errorf("11 statusDetails: %q; want InvalidRequest", code)
	}
	b, _ = json.Marshal(map[string]any{"status": "IN_PROGRESS", "statusDetails": map[string]string{"k": strings.Repeat("x", 1025)}})
	if _, code := f.device(t, "t0", OpUpdate, "j", string(b)); code != CodeInvalidRequest {
		t.Errorf("a 1025-byte detail: %q; want InvalidRequest", code)
	}
	if x, _ := f.st.Jobs().Execution(context.Background(), "j", "t0"); x.Status != "QUEUED" || x.StatusDetails != nil {
		t.Errorf("after refused updates: %+v; want it untouched", x)
	}
}

func value(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}
