package httpapi

import (
	"net/http"

	"github.com/moteiot/mote/internal/store"
)

// typeCreate is the body of POST /types.
type typeCreate struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Policies    []string `json:"policies"`
}

// typePatch is the body of PATCH /types/{name}: absent (or null) fields
// stay as they are.
type typePatch struct {
	Description *string  `json:"description"`
	Policies    []string `json:"policies"` // replaces the whole list
}

// typeOut gives a type's policies as [] rather than null.
func typeOut(t store.ThingType) store.ThingType {
	if t.Policies == nil {
		t.Policies = []string{}
	}
	return t
}

func (s *server) createType(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	var in typeCreate
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	t, err := s.reg.CreateType(r.Context(), store.ThingType{Name: in.Name, Description: in.Description, Policies: in.Policies})
	if err != nil {
		return err
	}
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
	for i := range ts {
		ts[i] = typeOut(ts[i])
	}
	return writeJSON(w, http.StatusOK, newList(ts, next))
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
	if t, err = s.reg.UpdateType(r.Context(), t); err != nil {
		return err
	}
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
	return noContent(w)
}
