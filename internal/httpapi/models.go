package httpapi

import (
	"context"
	"encoding/json"

	"github.com/moteiot/mote/internal/devicemodel"
)

// Device models (docs/device-models.md): desired updates of the classic
// shadow and commands are checked against the model of the thing's type.

// modelOf returns the model of a thing's type, read afresh (nil: none,
// or models are not enabled).
func (s *server) modelOf(ctx context.Context, thing string) (*devicemodel.Compiled, error) {
	if s.models == nil {
		return nil, nil
	}
	t, err := s.reg.GetThing(ctx, thing)
	if err != nil {
		return nil, err
	}
	return s.models.Of(ctx, t.Type, true)
}

// checkDesired refuses a classic-shadow update whose desired state the
// model does not allow (400 naming the JSON path); nothing is stored.
func (s *server) checkDesired(ctx context.Context, thing, name string, body []byte) error {
	if name != "" {
		return nil // models describe the classic shadow
	}
	c, err := s.modelOf(ctx, thing)
	if err != nil || c == nil {
		return err
	}
	return c.ValidateShadowUpdate(body)
}

// checkCommand refuses a command the model does not list or whose
// payload does not match its schema (400); no command is created.
func (s *server) checkCommand(ctx context.Context, thing, name string, payload json.RawMessage) error {
	c, err := s.modelOf(ctx, thing)
	if err != nil || c == nil {
		return err
	}
	return c.ValidateCommand(name, payload)
}
