package registry

import (
	"context"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// CreateType stores a new thing type.
func (r *Registry) CreateType(ctx context.Context, t store.ThingType) (store.ThingType, error) {
	if err := core.ValidateName("name", t.Name); err != nil {
		return store.ThingType{}, err
	}
	if err := validateDescription(t.Description); err != nil {
		return store.ThingType{}, err
	}
	if err := validateMeta(nil, nil, nil, t.Policies); err != nil {
		return store.ThingType{}, err
	}
	return r.st.Types().Create(ctx, t)
}

// GetType returns one thing type.
func (r *Registry) GetType(ctx context.Context, name string) (store.ThingType, error) {
	return r.st.Types().Get(ctx, name)
}

// ListTypes returns a page of thing types and the next cursor.
func (r *Registry) ListTypes(ctx context.Context, after string, limit int) ([]store.ThingType, string, error) {
	return page(after, limit, func(after string, n int) ([]store.ThingType, error) { return r.st.Types().List(ctx, after, n) },
		func(t store.ThingType) string { return t.Name })
}

// UpdateType replaces a type's description and policies.
func (r *Registry) UpdateType(ctx context.Context, t store.ThingType) (store.ThingType, error) {
	if err := validateDescription(t.Description); err != nil {
		return store.ThingType{}, err
	}
	if err := validateMeta(nil, nil, nil, t.Policies); err != nil {
		return store.ThingType{}, err
	}
	t, err := r.st.Types().Update(ctx, t)
	if err != nil {
		return store.ThingType{}, err
	}
	r.emit(Event{Kind: PoliciesChanged})
	return t, nil
}

// DeleteType deletes a thing type no thing uses.
func (r *Registry) DeleteType(ctx context.Context, name string) error {
	return r.st.Types().Delete(ctx, name)
}

// CreateGroup stores a new static group.
func (r *Registry) CreateGroup(ctx context.Context, g store.Group) (store.Group, error) {
	if err := core.ValidateName("name", g.Name); err != nil {
		return store.Group{}, err
	}
	if err := validateDescription(g.Description); err != nil {
		return store.Group{}, err
	}
	if g.Query != "" {
		if err := r.checkQuery(g.Query); err != nil {
			return store.Group{}, err
		}
		if err := r.checkDynamicLimit(ctx); err != nil {
			return store.Group{}, err
		}
	}
	g, err := r.st.Groups().Create(ctx, g)
	if err != nil {
		return store.Group{}, err
	}
	r.emit(Event{Kind: GroupsChanged})
	return g, nil
}

// GetGroup returns one group.
func (r *Registry) GetGroup(ctx context.Context, name string) (store.Group, error) {
	return r.st.Groups().Get(ctx, name)
}

// ListGroups returns a page of groups and the next cursor.
func (r *Registry) ListGroups(ctx context.Context, after string, limit int) ([]store.Group, string, error) {
	return page(after, limit, func(after string, n int) ([]store.Group, error) { return r.st.Groups().List(ctx, after, n) },
		func(g store.Group) string { return g.Name })
}

// UpdateGroup replaces a group's description and, for a dynamic group,
// its query. A group cannot change between static and dynamic.
func (r *Registry) UpdateGroup(ctx context.Context, g store.Group) (store.Group, error) {
	if err := validateDescription(g.Description); err != nil {
		return store.Group{}, err
	}
	old, err := r.st.Groups().Get(ctx, g.Name)
	if err != nil {
		return store.Group{}, err
	}
	if (old.Query == "") != (g.Query == "") {
		if old.Query == "" {
			return store.Group{}, core.Invalid("query", "group %q is static: it cannot get a query (create a dynamic group instead)", g.Name)
		}
		return store.Group{}, core.Invalid("query", "group %q is dynamic: its query cannot be removed", g.Name)
	}
	if g.Query != "" && g.Query != old.Query {
		if err := r.checkQuery(g.Query); err != nil {
			return store.Group{}, err
		}
	}
	if g, err = r.st.Groups().Update(ctx, g); err != nil {
		return store.Group{}, err
	}
	r.emit(Event{Kind: GroupsChanged})
	return g, nil
}

// DeleteGroup deletes a group; its things stay, without that membership.
func (r *Registry) DeleteGroup(ctx context.Context, name string) error {
	if err := r.st.Groups().Delete(ctx, name); err != nil {
		return err
	}
	r.emit(Event{Kind: GroupsChanged, Group: name})
	return nil
}

// Page limits of the List methods. The store returns at most maxLimit rows
// per call, whatever it is asked for.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// page returns up to limit rows after the cursor after, and the cursor of
// the next page ("" when there is none). list(after, n) must return at most
// n rows with keys greater than after, ordered by key.
//
// The store caps n at maxLimit, so asking it for limit+1 rows to detect a
// next page would lose the cursor of a full page of maxLimit. page asks for
// limit rows instead and, only when it got all of them, for one row after
// the last to learn whether anything follows.
func page[T any](after string, limit int, list func(after string, n int) ([]T, error), key func(T) string) ([]T, string, error) {
	if limit < 0 || limit > maxLimit {
		return nil, "", core.Invalid("limit", "limit must be between 1 and %d", maxLimit)
	}
	if limit == 0 {
		limit = defaultLimit
	}
	return core.PageAfter(after, limit, list, key)
}
