package registry

import (
	"context"
	"reflect"
	"sort"
	"unicode/utf8"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Limits on thing metadata.
const (
	MaxAttributes     = 100
	MaxAttributeKey   = 128
	MaxAttributeValue = 1024
	MaxTags           = 50
	MaxGroups         = 100
	MaxPolicies       = 20
)

// CreateThing validates t and stores it. t.Enabled is taken as given: the
// API defaults it to true.
func (r *Registry) CreateThing(ctx context.Context, t store.Thing) (store.Thing, error) {
	if err := core.ValidateName("name", t.Name); err != nil {
		return store.Thing{}, err
	}
	if t.Type != "" {
		if err := core.ValidateName("type", t.Type); err != nil {
			return store.Thing{}, err
		}
	}
	if err := validateMeta(t.Attributes, t.Tags, t.Groups, t.Policies); err != nil {
		return store.Thing{}, err
	}
	t.Connected, t.LastSeen = false, nil
	if err := r.checkStaticGroups(ctx, t.Groups); err != nil {
		return store.Thing{}, err
	}
	created, err := r.st.Things().Create(ctx, t)
	if err != nil {
		return store.Thing{}, err
	}
	r.emit(Event{Kind: ThingCreated, Thing: created.Name, Enabled: created.Enabled})
	r.mu.RLock()
	ls := r.onCreated
	r.mu.RUnlock()
	for _, fn := range ls {
		fn(created.Name)
	}
	return created, nil
}

// OnThingCreated calls fn with the name of every thing created (after it
// is stored; fn must not block). Continuous jobs pick new things up so.
func (r *Registry) OnThingCreated(fn func(thing string)) {
	r.mu.Lock()
	r.onCreated = append(r.onCreated, fn)
	r.mu.Unlock()
}

// GetThing returns one thing.
func (r *Registry) GetThing(ctx context.Context, name string) (store.Thing, error) {
	return r.st.Things().Get(ctx, name)
}

// ListThings returns a page of things and the cursor of the next page ("" at
// the end).
func (r *Registry) ListThings(ctx context.Context, f store.ThingFilter) ([]store.Thing, string, error) {
	return page(f.After, f.Limit, func(after string, n int) ([]store.Thing, error) {
		g := f
		g.After, g.Limit = after, n
		return r.st.Things().List(ctx, g)
	}, func(t store.Thing) string { return store.ThingCursor(f.Sort, t) })
}

// CountThings returns how many things match f's filters (its cursor and
// limit aside).
func (r *Registry) CountThings(ctx context.Context, f store.ThingFilter) (int, error) {
	return r.st.Things().Total(ctx, f)
}

// ThingCounts returns how many things there are, connected and disabled.
func (r *Registry) ThingCounts(ctx context.Context) (store.ThingCounts, error) {
	return r.st.Things().Counts(ctx)
}

// UpdateThing applies a patch. Disabling a thing disconnects it. An empty
// patch changes nothing (not even UpdatedAt) and announces nothing; it
// returns the thing as it is.
func (r *Registry) UpdateThing(ctx context.Context, name string, p store.ThingPatch) (store.Thing, error) {
	if isEmptyPatch(p) {
		return r.st.Things().Get(ctx, name)
	}
	if p.Type != nil && *p.Type != "" {
		if err := core.ValidateName("type", *p.Type); err != nil {
			return store.Thing{}, err
		}
	}
	if err := validateMeta(p.Attributes, p.Tags, p.Groups, p.Policies); err != nil {
		return store.Thing{}, err
	}
	if err := r.checkStaticGroups(ctx, p.Groups); err != nil {
		return store.Thing{}, err
	}
	t, err := r.st.Things().Update(ctx, name, p)
	if err != nil {
		return store.Thing{}, err
	}
	r.emit(Event{Kind: ThingChanged, Thing: name, Enabled: t.Enabled})
	return t, nil
}

// DeleteThing deletes a thing and its credentials and disconnects it.
func (r *Registry) DeleteThing(ctx context.Context, name string) error {
	if err := r.st.Things().Delete(ctx, name); err != nil {
		return err
	}
	r.emit(Event{Kind: ThingDeleted, Thing: name})
	return nil
}

// isEmptyPatch reports whether every field of p is nil (an empty but
// non-nil set is a change: it clears the set). It looks at all fields, so
// one added to store.ThingPatch later is not mistaken for no change.
func isEmptyPatch(p store.ThingPatch) bool { return reflect.ValueOf(p).IsZero() }

func validateMeta(attrs map[string]string, tags, groups, policies []string) error {
	if len(attrs) > MaxAttributes {
		return core.Invalid("attributes", "at most %d attributes", MaxAttributes)
	}
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the first bad key deterministically
	for _, k := range keys {
		v := attrs[k]
		if k == "" || len(k) > MaxAttributeKey || !utf8.ValidString(k) || hasControl(k) {
			return core.Invalid("attributes", "attribute key %q must be 1 to %d printable characters", k, MaxAttributeKey)
		}
		if len(v) > MaxAttributeValue || !utf8.ValidString(v) {
			return core.Invalid("attributes."+k, "attribute value must be valid UTF-8 of at most %d bytes", MaxAttributeValue)
		}
	}
	if len(tags) > MaxTags {
		return core.Invalid("tags", "at most %d tags", MaxTags)
	}
	for _, tag := range tags {
		if tag == "" || len(tag) > MaxAttributeKey || !utf8.ValidString(tag) || hasControl(tag) {
			return core.Invalid("tags", "tag %q must be 1 to %d printable characters", tag, MaxAttributeKey)
		}
	}
	if len(groups) > MaxGroups {
		return core.Invalid("groups", "at most %d groups", MaxGroups)
	}
	for _, g := range groups {
		if err := core.ValidateName("groups", g); err != nil {
			return err
		}
	}
	if len(policies) > MaxPolicies {
		return core.Invalid("policies", "at most %d policies", MaxPolicies)
	}
	for _, p := range policies {
		if err := core.ValidateName("policies", p); err != nil {
			return err
		}
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}
