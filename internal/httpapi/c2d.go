package httpapi

import (
	"net/http"
	"sort"
	"strings"

	"github.com/moteiot/mote/internal/azureiot"
	"github.com/moteiot/mote/internal/core"
)

// C2DSender sends raw Azure IoT Hub cloud-to-device messages;
// *broker.Broker implements it.
type C2DSender interface {
	SendC2D(thing string, payload []byte, props []azureiot.Property, contentType string) (string, error)
}

// c2dRequest is the body of POST /things/{name}/c2d.
type c2dRequest struct {
	Body        *string           `json:"body"`        // the message body, as is
	Properties  map[string]string `json:"properties"`  // application properties
	ContentType string            `json:"contentType"` // $.ct
}

// c2dResponse answers POST /things/{name}/c2d.
type c2dResponse struct {
	MessageID string `json:"messageId"` // $.mid
}

// sendC2D is POST /things/{name}/c2d: a raw cloud-to-device message to a
// thing connected with the Azure IoT Hub device protocol, sent now (not
// queued; Mote commands are the queued kind): 409 when the thing has no
// such connection subscribed to its C2D messages.
func (s *server) sendC2D(w http.ResponseWriter, r *http.Request) error {
	if s.c2d == nil {
		return core.Errorf(core.KindUnavailable, "cloud-to-device messages are not enabled on this server")
	}
	if err := noParams(r); err != nil {
		return err
	}
	thing, err := pathName(r, "name")
	if err != nil {
		return err
	}
	var req c2dRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Body == nil {
		return core.Invalid("body", "body is required (a string; may be empty)")
	}
	if len(req.Properties) > azureiot.MaxProperties-4 {
		return core.Invalid("properties", "at most %d properties", azureiot.MaxProperties-4)
	}
	keys := make([]string, 0, len(req.Properties))
	for k, v := range req.Properties {
		if k == "" || strings.HasPrefix(k, "$") || len(k) > azureiot.MaxPropertyLength || len(v) > azureiot.MaxPropertyLength {
			return core.Invalid("properties", "property names must be 1 to %d bytes and not start with '$' (system properties are set by the server); values at most %d bytes",
				azureiot.MaxPropertyLength, azureiot.MaxPropertyLength)
		}
		keys = append(keys, k)
	}
	if len(req.ContentType) > azureiot.MaxPropertyLength {
		return core.Invalid("contentType", "contentType is longer than %d bytes", azureiot.MaxPropertyLength)
	}
	sort.Strings(keys)
	props := make([]azureiot.Property, 0, len(keys))
	for _, k := range keys {
		props = append(props, azureiot.Property{Key: k, Value: req.Properties[k]})
	}
	if _, err := s.reg.GetThing(r.Context(), thing); err != nil {
		return err
	}
	mid, err := s.c2d.SendC2D(thing, []byte(*req.Body), props, req.ContentType)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, c2dResponse{MessageID: mid})
}
