package daemon

import (
	"context"
	"encoding/json"

	"github.com/moteiot/mote/internal/azureiot"
	"github.com/moteiot/mote/internal/broker"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/shadow"
)

// azureTwins backs Azure IoT Hub device twins with the thing's classic
// shadow (docs/azure.md), so the REST API, AWS-style devices and the
// console see the same state.
type azureTwins struct{ shadows *shadow.Service }

var _ broker.TwinBackend = azureTwins{}

func (a azureTwins) GetTwin(ctx context.Context, thing string) ([]byte, error) {
	body, err := a.shadows.Get(ctx, thing, "")
	if core.IsNotFound(err) {
		body, err = nil, nil // no shadow yet: the empty twin
	}
	if err != nil {
		return nil, err
	}
	return azureiot.TwinFromShadow(body)
}

func (a azureTwins) ReportTwin(ctx context.Context, thing string, patch []byte) (int64, error) {
	doc, err := azureiot.ShadowReportedUpdate(patch)
	if err != nil {
		return 0, core.Invalid("patch", "%v", err)
	}
	body, err := a.shadows.Update(ctx, thing, "", doc)
	if err != nil {
		return 0, err
	}
	var v struct {
		Version int64 `json:"version"`
	}
	_ = json.Unmarshal(body, &v)
	return v.Version, nil
}

func (a azureTwins) DesiredPatch(documents []byte) ([]byte, int64, bool) {
	return azureiot.DesiredPatch(documents)
}
