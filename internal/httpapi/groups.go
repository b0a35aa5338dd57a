package httpapi

import (
	"net/http"

	"github.com/moteiot/mote/internal/store"
)

// groupCreate is the body of POST /groups.
type groupCreate struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// groupPatch is the body of PATCH /groups/{name}.
type groupPatch struct {
	Description *string `json:"description"`
}

func (s *server) createGroup(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	var in groupCreate
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	g, err := s.reg.CreateGroup(r.Context(), store.Group{Name: in.Name, Description: in.Description})
	if err != nil {
		return err
	}
	return created(w, "/groups/"+g.Name, g)
}

func (s *server) listGroups(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	gs, next, err := s.reg.ListGroups(r.Context(), after, limit)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, newList(gs, next))
}

func (s *server) getGroup(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r, "group")
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	g, err := s.reg.GetGroup(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, g)
}

func (s *server) updateGroup(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r, "group")
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	var in groupPatch
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	g, err := s.reg.GetGroup(r.Context(), name)
	if err != nil {
		return err
	}
	if in.Description != nil {
		g.Description = *in.Description
		if g, err = s.reg.UpdateGroup(r.Context(), g); err != nil {
			return err
		}
	}
	return writeJSON(w, http.StatusOK, g)
}

func (s *server) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r, "group")
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	if err := s.reg.DeleteGroup(r.Context(), name); err != nil {
		return err
	}
	return noContent(w)
}
