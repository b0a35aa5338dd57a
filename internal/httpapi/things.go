package httpapi

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/httpapi/wire"
	"github.com/moteiot/mote/internal/store"
)

// thingCreate is the body of POST /things.
type thingCreate struct {
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Attributes map[string]string `json:"attributes"`
	Tags       []string          `json:"tags"`
	Groups     []string          `json:"groups"`
	Policies   []string          `json:"policies"`
	Enabled    *bool             `json:"enabled"` // absent: true
}

// thingPatch is the body of PATCH /things/{name}: absent (or null) fields
// stay as they are; present sets replace the whole set.
type thingPatch struct {
	Type       *string           `json:"type"` // "" removes the type
	Attributes map[string]string `json:"attributes"`
	Tags       []string          `json:"tags"`
	Groups     []string          `json:"groups"`
	Policies   []string          `json:"policies"`
	Enabled    *bool             `json:"enabled"`
}

// thingJSON is a thing on the wire: the registry's record and what the
// broker counted about it.
type thingJSON = wire.Thing

// thingList is a page of things with the number of all that match.
type thingList struct {
	Items      []thingJSON `json:"items"`
	NextCursor string      `json:"nextCursor,omitempty"`
	Total      int         `json:"total"`
}

// thingOut maps a thing's row to the wire, its sets as [] and {} rather
// than null.
func thingOut(t store.Thing) thingJSON {
	if t.Attributes == nil {
		t.Attributes = map[string]string{}
	}
	if t.Tags == nil {
		t.Tags = []string{}
	}
	if t.Groups == nil {
		t.Groups = []string{}
	}
	if t.Policies == nil {
		t.Policies = []string{}
	}
	st := t.Stats
	return thingJSON{
		Name: t.Name, Type: t.Type, Attributes: t.Attributes, Tags: t.Tags, Groups: t.Groups, Policies: t.Policies,
		Enabled: t.Enabled, Connected: t.Connected, LastSeen: t.LastSeen, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, Node: t.Node,
		Stats: wire.ThingStats{
			PublishDenied:    st.PublishDenied,
			InvalidTelemetry: st.InvalidTelemetry,
			LastDeniedTopic:  st.LastDeniedTopic,
			LastDeniedAt:     st.LastDeniedAt,
			LastInvalidAt:    st.LastInvalidAt,

			ModelViolations:      st.ModelViolations,
			LastModelViolation:   rawOrNil(st.LastModelViolation),
			LastModelViolationAt: st.LastModelViolationAt,
		}}
}

// rawOrNil is stored JSON as it is, or nil when empty or not JSON.
func rawOrNil(s string) json.RawMessage {
	if s == "" || !json.Valid([]byte(s)) {
		return nil
	}
	return json.RawMessage(s)
}

func (s *server) createThing(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	var in thingCreate
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	enabled := true
	if in.Enabled != nil {
		enabled = *in.Enabled
	}
	t, err := s.reg.CreateThing(r.Context(), store.Thing{
		Name:       in.Name,
		Type:       in.Type,
		Attributes: in.Attributes,
		Tags:       in.Tags,
		Groups:     in.Groups,
		Policies:   in.Policies,
		Enabled:    enabled,
	})
	if err != nil {
		return err
	}
	return created(w, "/things/"+t.Name, thingOut(t))
}

func (s *server) listThings(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r, "attr.", "q", "prefix", "type", "group", "tag", "connected", "sort", "limit", "cursor")
	if err != nil {
		return err
	}
	if sc := scopeFrom(r.Context()); sc != nil {
		return s.scopedListThings(w, r, sc, q)
	}
	if fq, ok := q.vals["q"]; ok {
		return s.queryThings(w, r, fq, q)
	}
	f := store.ThingFilter{
		NamePrefix: q.vals["prefix"],
		Type:       q.vals["type"],
		Group:      q.vals["group"],
		Tag:        q.vals["tag"],
		After:      q.vals["cursor"],
		Sort:       q.vals["sort"],
	}
	if f.Sort != "" && !slices.Contains(store.ThingSorts, f.Sort) {
		return core.Invalid("sort", "sort must be one of %s", strings.Join(store.ThingSorts, ", "))
	}
	if len(q.prefixed) > 0 {
		f.Attributes = q.prefixed
	}
	if f.Connected, err = q.boolean("connected"); err != nil {
		return err
	}
	if f.Limit, err = q.limit(); err != nil {
		return err
	}
	things, next, err := s.reg.ListThings(r.Context(), f)
	if err != nil {
		return err
	}
	total, err := s.reg.CountThings(r.Context(), f)
	if err != nil {
		return err
	}
	out := thingList{Items: make([]thingJSON, len(things)), NextCursor: next, Total: total}
	for i := range things {
		out.Items[i] = thingOut(things[i])
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *server) getThing(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r, "thing")
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	t, err := s.reg.GetThing(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, thingOut(t))
}

func (s *server) updateThing(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r, "thing")
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	var in thingPatch
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	t, err := s.reg.UpdateThing(r.Context(), name, store.ThingPatch{
		Type:       in.Type,
		Attributes: in.Attributes,
		Tags:       in.Tags,
		Groups:     in.Groups,
		Policies:   in.Policies,
		Enabled:    in.Enabled,
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, thingOut(t))
}

func (s *server) deleteThing(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r, "thing")
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	if err := s.reg.DeleteThing(r.Context(), name); err != nil {
		return err
	}
	return noContent(w)
}

// attachPolicy adds a policy to a thing's own policies; attaching one that
// is attached already changes nothing.
func (s *server) attachPolicy(w http.ResponseWriter, r *http.Request) error {
	return s.changeThingPolicies(w, r, func(ps []string, p string) []string {
		if slices.Contains(ps, p) {
			return nil
		}
		return append(slices.Clip(ps), p)
	})
}

// detachPolicy removes a policy from a thing's own policies; detaching one
// that is not attached changes nothing.
func (s *server) detachPolicy(w http.ResponseWriter, r *http.Request) error {
	return s.changeThingPolicies(w, r, func(ps []string, p string) []string {
		if !slices.Contains(ps, p) {
			return nil
		}
		out := []string{} // non-nil: an empty set must still be applied
		for _, q := range ps {
			if q != p {
				out = append(out, q)
			}
		}
		return out
	})
}

// changeThingPolicies reads the thing, computes its new policy list with
// change (nil: nothing to do) and stores it.
func (s *server) changeThingPolicies(w http.ResponseWriter, r *http.Request, change func(ps []string, p string) []string) error {
	name, err := nameParam(r, "thing")
	if err != nil {
		return err
	}
	policy, err := pathName(r, "policy")
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	t, err := s.reg.GetThing(r.Context(), name)
	if err != nil {
		return err
	}
	if ps := change(t.Policies, policy); ps != nil {
		if t, err = s.reg.UpdateThing(r.Context(), name, store.ThingPatch{Policies: ps}); err != nil {
			return err
		}
	}
	return writeJSON(w, http.StatusOK, thingOut(t))
}

// nameParam returns the {name} of a path that names a thing, type, group
// or policy. A name that can never exist is reported as not found, like any
// other missing resource.
func nameParam(r *http.Request, what string) (string, error) {
	name := r.PathValue("name")
	if core.ValidateName("name", name) != nil {
		return "", core.NotFound(what, name)
	}
	return name, nil
}
