package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/devicemodel"

	"github.com/moteiot/mote/internal/httpapi/wire"
	"github.com/moteiot/mote/internal/store"
)

// typeCreate is the body of POST /types.
type typeCreate struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Policies    []string        `json:"policies"`
	Model       json.RawMessage `json:"model"` // device model (docs/device-models.md); absent or null: none
}

// typePatch is the body of PATCH /types/{name}: absent (or null) fields
// stay as they are, but a null model removes the model.
type typePatch struct {
	Description *string         `json:"description"`
	Policies    []string        `json:"policies"` // replaces the whole list
	Model       json.RawMessage `json:"model"`    // absent: kept; null: removed; an object: replaces it
}

// typeJSON is a thing type as the API shows it.
type typeJSON = wire.ThingType

// typeOut gives a type's policies as [] rather than null.
func typeOut(t store.ThingType) typeJSON {
	if t.Policies == nil {
		t.Policies = []string{}
	}
	return typeJSON{Name: t.Name, Description: t.Description, Policies: t.Policies, Model: t.Model,
		CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
}

// checkModel checks a type's model and returns it compacted (nil for
// none: absent or null).
func (s *server) checkModel(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if _, err := devicemodel.Parse(raw, s.typeModelMax); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, core.Invalid("model", "model is not JSON: %v", err)
	}
	return b.Bytes(), nil
}

func (s *server) createType(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	var in typeCreate
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	model, err := s.checkModel(in.Model)
	if err != nil {
		return err
	}
	t, err := s.reg.CreateType(r.Context(), store.ThingType{Name: in.Name, Description: in.Description, Policies: in.Policies, Model: model})
	if err != nil {
		return err
	}
	s.models.Forget(t.Name)
	return created(w, "/types/"+t.Name, typeOut(t))
}

func (s *server) listTypes(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	ts, next, err := s.reg.ListTypes(r.Context(), after, limit)
	if err != nil {
		return err
	}
	out := make([]typeJSON, len(ts))
	for i := range ts {
		out[i] = typeOut(ts[i])
	}
	return writeJSON(w, http.StatusOK, newList(out, next))
}

func (s *server) getType(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r, "type")
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	t, err := s.reg.GetType(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, typeOut(t))
}

// updateType merges the patch into the stored type: the registry replaces
// description and policies together.
func (s *server) updateType(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r, "type")
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	var in typePatch
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	t, err := s.reg.GetType(r.Context(), name)
	if err != nil {
		return err
	}
	if in.Description != nil {
		t.Description = *in.Description
	}
	if in.Policies != nil {
		t.Policies = in.Policies
	}
	if in.Model != nil {
		if t.Model, err = s.checkModel(in.Model); err != nil {
			return err
		}
	}
	if t, err = s.reg.UpdateType(r.Context(), t); err != nil {
		return err
	}
	s.models.Forget(name)
	return writeJSON(w, http.StatusOK, typeOut(t))
}

func (s *server) deleteType(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r, "type")
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	if err := s.reg.DeleteType(r.Context(), name); err != nil {
		return err
	}
	s.models.Forget(name)
	return noContent(w)
}
