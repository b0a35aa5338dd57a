package httpapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/profiles"
)

// profileTarget is a profile's target on the wire: a group or a query.
type profileTarget struct {
	Group string `json:"group,omitempty"`
	Query string `json:"query,omitempty"`
}

// profileWrite is the body of POST /profiles (with name) and PUT
// /profiles/{name} (whose name, if given, must match the path).
type profileWrite struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Desired     json.RawMessage `json:"desired"`
	Target      profileTarget   `json:"target"`
	Priority    int             `json:"priority"`
}

// profileJSON is a profile on the wire.
type profileJSON struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Desired     json.RawMessage `json:"desired"`
	Target      profileTarget   `json:"target"`
	Priority    int             `json:"priority"`
	CreatedAt   time.Time       `json:"createdAt"`
	UpdatedAt   time.Time       `json:"updatedAt"`
}

type keyDiffJSON struct {
	Key      string          `json:"key"`
	Desired  json.RawMessage `json:"desired"`
	Reported json.RawMessage `json:"reported"` // null: not reported
}

// thingComplianceJSON is one thing's compliance with one profile.
type thingComplianceJSON struct {
	Thing     string        `json:"thing,omitempty"`
	Profile   string        `json:"profile,omitempty"`
	Priority  *int          `json:"priority,omitempty"`
	Compliant bool          `json:"compliant"`
	Keys      int           `json:"keys"`
	Differing []keyDiffJSON `json:"differing"`
}

// profileComplianceJSON is GET /profiles/{name}/compliance.
type profileComplianceJSON struct {
	Profile      string                `json:"profile"`
	Things       int                   `json:"things"`
	Compliant    int                   `json:"compliant"`
	NonCompliant int                   `json:"nonCompliant"`
	Items        []thingComplianceJSON `json:"items"` // the non-compliant things
	NextCursor   string                `json:"nextCursor,omitempty"`
}

func profileOut(p profiles.Profile) profileJSON {
	return profileJSON{Name: p.Name, Description: p.Description, Desired: p.Desired,
		Target: profileTarget{Group: p.Group, Query: p.Query}, Priority: p.Priority, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
}

func complianceOut(c profiles.ThingCompliance, withThing, withProfile bool) thingComplianceJSON {
	out := thingComplianceJSON{Compliant: c.Compliant, Keys: c.Keys, Differing: []keyDiffJSON{}}
	if withThing {
		out.Thing = c.Thing
	}
	if withProfile {
		out.Profile = c.Profile
		p := c.Priority
		out.Priority = &p
	}
	for _, d := range c.Differing {
		rep := d.Reported
		if rep == nil {
			rep = json.RawMessage("null")
		}
		out.Differing = append(out.Differing, keyDiffJSON{Key: d.Key, Desired: d.Desired, Reported: rep})
	}
	return out
}

func (s *server) profileService() (*profiles.Service, error) {
	if s.profiles == nil {
		return nil, core.Errorf(core.KindUnavailable, "configuration profiles are not enabled on this server")
	}
	return s.profiles, nil
}

func (in profileWrite) profile() profiles.Profile {
	return profiles.Profile{Name: in.Name, Description: in.Description, Desired: in.Desired,
		Group: in.Target.Group, Query: in.Target.Query, Priority: in.Priority}
}

func (s *server) createProfile(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.profileService()
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	var in profileWrite
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	p, err := ps.Create(r.Context(), in.profile())
	if err != nil {
		return err
	}
	return created(w, "/profiles/"+p.Name, profileOut(p))
}

func (s *server) listProfiles(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.profileService()
	if err != nil {
		return err
	}
	after, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	if limit <= 0 {
		limit = 100
	}
	list, err := ps.List(r.Context(), after, limit)
	if err != nil {
		return err
	}
	next := ""
	if len(list) == limit {
		next = list[limit-1].Name
	}
	out := make([]profileJSON, len(list))
	for i, p := range list {
		out[i] = profileOut(p)
	}
	return writeJSON(w, http.StatusOK, newList(out, next))
}

// profileByName is the common start of the /profiles/{name} handlers: the
// service, the profile name from the path, and no query parameters.
func (s *server) profileByName(r *http.Request) (*profiles.Service, string, error) {
	ps, err := s.profileService()
	if err != nil {
		return nil, "", err
	}
	name, err := nameParam(r, "profile")
	if err != nil {
		return nil, "", err
	}
	if err := noParams(r); err != nil {
		return nil, "", err
	}
	return ps, name, nil
}

func (s *server) getProfile(w http.ResponseWriter, r *http.Request) error {
	ps, name, err := s.profileByName(r)
	if err != nil {
		return err
	}
	p, err := ps.Get(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, profileOut(p))
}

func (s *server) updateProfile(w http.ResponseWriter, r *http.Request) error {
	ps, name, err := s.profileByName(r)
	if err != nil {
		return err
	}
	var in profileWrite
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Name != "" && in.Name != name {
		return core.Invalid("name", "name %q does not match the path (%q); a profile cannot be renamed", in.Name, name)
	}
	in.Name = name
	p, err := ps.Update(r.Context(), in.profile())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, profileOut(p))
}

func (s *server) deleteProfile(w http.ResponseWriter, r *http.Request) error {
	ps, name, err := s.profileByName(r)
	if err != nil {
		return err
	}
	if err := ps.Delete(r.Context(), name); err != nil {
		return err
	}
	return noContent(w)
}

func (s *server) profileCompliance(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.profileService()
	if err != nil {
		return err
	}
	name, err := nameParam(r, "profile")
	if err != nil {
		return err
	}
	after, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	c, err := ps.ProfileCompliance(r.Context(), name, after, limit)
	if err != nil {
		return err
	}
	out := profileComplianceJSON{Profile: name, Things: c.Things, Compliant: c.Compliant, NonCompliant: c.NonCompliant,
		Items: []thingComplianceJSON{}, NextCursor: c.Next}
	for _, t := range c.Page {
		out.Items = append(out.Items, complianceOut(t, true, false))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *server) listThingProfiles(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.profileService()
	if err != nil {
		return err
	}
	name, err := nameParam(r, "thing")
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	list, err := ps.ThingProfiles(r.Context(), name)
	if err != nil {
		return err
	}
	out := make([]thingComplianceJSON, len(list))
	for i, c := range list {
		out[i] = complianceOut(c, false, true)
	}
	return writeJSON(w, http.StatusOK, newList(out, ""))
}
