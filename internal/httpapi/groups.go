package httpapi

import (
	"net/http"

	"github.com/moteiot/mote/internal/httpapi/wire"
	"github.com/moteiot/mote/internal/store"
)

// groupCreate is the body of POST /groups. With a query the group is
// dynamic: its members are the things that match it.
type groupCreate struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Query       string `json:"query"`
}

// groupPatch is the body of PATCH /groups/{name}.
type groupPatch struct {
	Description *string `json:"description"`
	Query       *string `json:"query"` // dynamic groups only
}

// groupJSON is a group on the wire.
type groupJSON = wire.Group

func groupOut(g store.Group) groupJSON {
	return groupJSON{Name: g.Name, Description: g.Description, Dynamic: g.Query != "", Query: g.Query, CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt}
}

func (s *server) createGroup(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	var in groupCreate
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	g, err := s.reg.CreateGroup(r.Context(), store.Group{Name: in.Name, Description: in.Description, Query: in.Query})
	if err != nil {
		return err
	}
	return created(w, "/groups/"+g.Name, groupOut(g))
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
	out := make([]groupJSON, len(gs))
	for i, g := range gs {
		out[i] = groupOut(g)
	}
	return writeJSON(w, http.StatusOK, newList(out, next))
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
	return writeJSON(w, http.StatusOK, groupOut(g))
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
	if in.Description != nil || in.Query != nil {
		if in.Description != nil {
			g.Description = *in.Description
		}
		if in.Query != nil {
			g.Query = *in.Query
		}
		if g, err = s.reg.UpdateGroup(r.Context(), g); err != nil {
			return err
		}
	}
	return writeJSON(w, http.StatusOK, groupOut(g))
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
