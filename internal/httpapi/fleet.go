package httpapi

import (
	"net/http"
	"slices"
	"strings"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// The fleet query routes (docs/fleet-query.md): GET /things?q=,
// GET /things:count?q= and the members of a group.

func (s *server) needFleet() error {
	if s.fleet == nil {
		return &core.Error{Kind: core.KindUnavailable, Msg: "fleet queries are not available"}
	}
	return nil
}

// queryThings answers GET /things?q=: the things that match a fleet
// query, paged and sorted like the rest of GET /things. The query stands
// for the other filters, which cannot be combined with it.
func (s *server) queryThings(w http.ResponseWriter, r *http.Request, fq string, q query) error {
	if err := s.needFleet(); err != nil {
		return err
	}
	for _, name := range []string{"prefix", "type", "group", "tag", "connected"} {
		if _, ok := q.vals[name]; ok {
			return core.Invalid(name, "%s cannot be combined with q: write it in the query", name)
		}
	}
	if len(q.prefixed) > 0 {
		return core.Invalid("attr", "attr.KEY cannot be combined with q: write attributes.KEY in the query")
	}
	sort := q.vals["sort"]
	if sort != "" && !slices.Contains(store.ThingSorts, sort) {
		return core.Invalid("sort", "sort must be one of %s", strings.Join(store.ThingSorts, ", "))
	}
	limit, err := q.limit()
	if err != nil {
		return err
	}
	page, err := s.fleet.List(r.Context(), fq, sort, q.vals["cursor"], limit)
	if err != nil {
		return err
	}
	out := thingList{Items: make([]thingJSON, 0, len(page.Names)), NextCursor: page.Next, Total: page.Total}
	for _, name := range page.Names {
		t, err := s.reg.GetThing(r.Context(), name)
		if core.KindOf(err) == core.KindNotFound {
			continue // deleted since the index saw it
		}
		if err != nil {
			return err
		}
		out.Items = append(out.Items, thingOut(t))
	}
	return writeJSON(w, http.StatusOK, out)
}

// thingCount is the answer of GET /things:count.
type thingCount struct {
	Count int `json:"count"`
}

func (s *server) countThings(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r, "", "q")
	if err != nil {
		return err
	}
	fq, ok := q.vals["q"]
	if !ok {
		return core.Invalid("q", "q (a fleet query) is required")
	}
	if err := s.needFleet(); err != nil {
		return err
	}
	if sc := scopeFrom(r.Context()); sc != nil {
		if fq, err = s.andScope(r.Context(), sc, fq); err != nil {
			return err
		}
	}
	n, err := s.fleet.Count(r.Context(), fq)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, thingCount{Count: n})
}

// groupThings answers GET /groups/{name}/things: a static group's things
// as listed on them, a dynamic group's as its query selects them.
func (s *server) groupThings(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r, "group")
	if err != nil {
		return err
	}
	cursor, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	g, err := s.reg.GetGroup(r.Context(), name)
	if err != nil {
		return err
	}
	if sc := scopeFrom(r.Context()); sc != nil {
		fq := g.Query
		if fq == "" {
			fq = "groups = " + quoteFleet(name)
		}
		return s.scopedQueryThings(w, r, sc, fq, cursor, limit)
	}
	if g.Query == "" {
		f := store.ThingFilter{Group: name, After: cursor, Limit: limit}
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
	if err := s.needFleet(); err != nil {
		return err
	}
	members, ok, err := s.fleet.Members(r.Context(), name)
	if err != nil {
		return err
	}
	if !ok {
		return &core.Error{Kind: core.KindUnavailable, Msg: "the group's members are being computed; retry shortly"}
	}
	if limit == 0 {
		limit = 100
	}
	start, _ := slices.BinarySearch(members, cursor)
	if c := cursor; c != "" && start < len(members) && members[start] == c {
		start++
	}
	end := min(start+limit, len(members))
	out := thingList{Items: []thingJSON{}, Total: len(members)}
	for _, n := range members[start:end] {
		t, err := s.reg.GetThing(r.Context(), n)
		if core.KindOf(err) == core.KindNotFound {
			continue
		}
		if err != nil {
			return err
		}
		out.Items = append(out.Items, thingOut(t))
	}
	if end < len(members) {
		out.NextCursor = members[end-1]
	}
	return writeJSON(w, http.StatusOK, out)
}
