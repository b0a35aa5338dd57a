package storetest

import (
	"testing"
	"time"

	"github.com/moteiot/mote/internal/store"
)

// testTypeModels: a type's model is kept as given, replaced and removed by
// Update; model violations are counted per thing by RecordActivity.
func testTypeModels(t *testing.T, open func(t *testing.T) store.Store) {
	s, ctx := open(t), t.Context()
	model := `{"telemetry":{"temperature":{"unit":"°C","type":"number","min":-40,"max":125}}}`
	y, err := s.Types().Create(ctx, store.ThingType{Name: "sensor", Model: []byte(model)})
	must(t, "Create with model", err)
	eq(t, "Model after Create", string(y.Model), model)
	_, err = s.Types().Create(ctx, store.ThingType{Name: "plain"})
	must(t, "Create without model", err)
	y, err = s.Types().Get(ctx, "plain")
	must(t, "Get plain", err)
	eq(t, "Model of a type without one", len(y.Model), 0)

	list, err := s.Types().List(ctx, "", 10)
	must(t, "List", err)
	eq(t, "listed types", len(list), 2)
	eq(t, "Model in List", string(list[1].Model), model)

	model2 := `{"commands":{"reboot":{}}}`
	y.Name, y.Model = "sensor", []byte(model2)
	y, err = s.Types().Update(ctx, y)
	must(t, "Update model", err)
	eq(t, "Model after Update", string(y.Model), model2)
	y.Model = nil
	y, err = s.Types().Update(ctx, y)
	must(t, "Update without model", err)
	eq(t, "Model removed", len(y.Model), 0)

	_, err = s.Things().Create(ctx, store.Thing{Name: "a", Type: "sensor", CreatedAt: base})
	must(t, "Create a", err)
	t1, t2 := base.Add(time.Minute).Truncate(time.Millisecond), base.Add(2*time.Minute).Truncate(time.Millisecond)
	must(t, "RecordActivity", s.Things().RecordActivity(ctx, []store.Activity{
		{Thing: "a", ModelViolations: 2, LastModelViolation: `{"key":"temperature","value":130}`, LastModelViolationAt: t1},
		{Thing: "nosuch", ModelViolations: 1, LastModelViolation: "x", LastModelViolationAt: t1},
		{Thing: "a", PublishDenied: 1, LastDeniedTopic: "x/1", LastDeniedAt: t1},
	}))
	must(t, "RecordActivity again", s.Things().RecordActivity(ctx, []store.Activity{
		{Thing: "a", ModelViolations: 1, LastModelViolation: `{"key":"temperature","value":-50}`, LastModelViolationAt: t2},
	}))
	th, err := s.Things().Get(ctx, "a")
	must(t, "Get a", err)
	eq(t, "ModelViolations", th.Stats.ModelViolations, int64(3))
	eq(t, "LastModelViolation", th.Stats.LastModelViolation, `{"key":"temperature","value":-50}`)
	eqTimePtr(t, "LastModelViolationAt", th.Stats.LastModelViolationAt, &t2)
	eq(t, "PublishDenied beside them", th.Stats.PublishDenied, int64(1))
}
