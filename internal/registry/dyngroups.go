package registry

import (
	"context"
	"fmt"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/fleetquery"
	"github.com/moteiot/mote/internal/store"
)

// checkQuery validates a dynamic group's query under the registry's
// limits; the error (field "query") gives the line and column.
func (r *Registry) checkQuery(q string) error {
	if _, err := fleetquery.Parse(q, r.queryLimits); err != nil {
		return core.Invalid("query", "%v", err)
	}
	return nil
}

// checkDynamicLimit refuses a new dynamic group beyond the limit.
func (r *Registry) checkDynamicLimit(ctx context.Context) error {
	n, after := 0, ""
	for {
		page, err := r.st.Groups().List(ctx, after, maxLimit)
		if err != nil {
			return err
		}
		for _, g := range page {
			if g.Query != "" {
				n++
			}
		}
		if len(page) < maxLimit {
			break
		}
		after = page[len(page)-1].Name
	}
	if n >= r.maxDynamic {
		return &core.Error{Kind: core.KindConflict, Field: "query",
			Msg: fmt.Sprintf("there are already %d dynamic groups, the limit (--max-dynamic-groups)", n)}
	}
	return nil
}

// checkStaticGroups refuses to list a thing in a dynamic group by hand:
// its members are the things that match its query.
func (r *Registry) checkStaticGroups(ctx context.Context, groups []string) error {
	for _, name := range groups {
		g, err := r.st.Groups().Get(ctx, name)
		if core.KindOf(err) == core.KindNotFound {
			continue // the store reports the missing group
		}
		if err != nil {
			return err
		}
		if g.Query != "" {
			return core.Invalid("groups", "group %q is dynamic: its members are the things that match its query", name)
		}
	}
	return nil
}

// GroupIsDynamic reports whether g is a dynamic group.
func GroupIsDynamic(g store.Group) bool { return g.Query != "" }
