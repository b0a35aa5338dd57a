package profiles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Priority bounds.
const (
	MinPriority = -1_000_000
	MaxPriority = 1_000_000
	// MaxDescription bounds a description in bytes.
	MaxDescription = 1024
)

func fromStore(p store.Profile) Profile {
	return Profile{Name: p.Name, Description: p.Description, Desired: p.Desired, Group: p.Group, Query: p.Query,
		Priority: p.Priority, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
}

// check validates a profile; the errors name the field.
func (s *Service) check(ctx context.Context, p Profile) error {
	if err := core.ValidateName("name", p.Name); err != nil {
		return err
	}
	if len(p.Description) > MaxDescription {
		return core.Invalid("description", "description is longer than %d bytes", MaxDescription)
	}
	if p.Priority < MinPriority || p.Priority > MaxPriority {
		return core.Invalid("priority", "priority must be between %d and %d", MinPriority, MaxPriority)
	}
	if _, err := ParseDocument(p.Desired, s.o.MaxSize); err != nil {
		return err
	}
	if err := checkTarget(p.Group, p.Query); err != nil {
		return err
	}
	if p.Query != "" {
		if _, err := s.o.Fleet.Count(ctx, p.Query); err != nil {
			if core.KindOf(err) == core.KindInvalid {
				return &core.Error{Kind: core.KindInvalid, Field: "target.query", Msg: "target.query: " + errMsg(err)}
			}
			return err
		}
		return nil
	}
	if _, err := s.o.Store.Groups().Get(ctx, p.Group); err != nil {
		if core.IsNotFound(err) {
			return core.Invalid("target.group", "group %q not found", p.Group)
		}
		return err
	}
	return nil
}

func errMsg(err error) string {
	var ce *core.Error
	if errors.As(err, &ce) && ce.Msg != "" {
		return ce.Msg
	}
	return err.Error()
}

func toStore(p Profile) store.Profile {
	return store.Profile{Name: p.Name, Description: p.Description, Desired: p.Desired, Group: p.Group, Query: p.Query, Priority: p.Priority}
}

// Create stores a new profile and schedules it to be applied. A name in
// use is core.Conflict; more than MaxProfiles profiles core.Conflict too.
func (s *Service) Create(ctx context.Context, p Profile) (Profile, error) {
	if err := s.check(ctx, p); err != nil {
		return Profile{}, err
	}
	n, err := s.o.Store.Profiles().Count(ctx)
	if err != nil {
		return Profile{}, err
	}
	if n >= s.o.MaxProfiles {
		return Profile{}, &core.Error{Kind: core.KindConflict, Field: "name",
			Msg: fmt.Sprintf("there are already %d profiles, the limit (--max-profiles)", n)}
	}
	out, err := s.o.Store.Profiles().Create(ctx, toStore(p))
	if err != nil {
		return Profile{}, err
	}
	s.none.Store(false)
	s.ReconcileAll()
	return fromStore(out), nil
}

// Get returns a profile or core.NotFound.
func (s *Service) Get(ctx context.Context, name string) (Profile, error) {
	p, err := s.o.Store.Profiles().Get(ctx, name)
	if err != nil {
		return Profile{}, err
	}
	return fromStore(p), nil
}

// List returns profiles ordered by name, after the name after.
func (s *Service) List(ctx context.Context, after string, limit int) ([]Profile, error) {
	list, err := s.o.Store.Profiles().List(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Profile, len(list))
	for i, p := range list {
		out[i] = fromStore(p)
	}
	return out, nil
}

// Update replaces a profile (all but its name and times) and schedules
// it to be applied.
func (s *Service) Update(ctx context.Context, p Profile) (Profile, error) {
	if _, err := s.o.Store.Profiles().Get(ctx, p.Name); err != nil {
		return Profile{}, err
	}
	if err := s.check(ctx, p); err != nil {
		return Profile{}, err
	}
	out, err := s.o.Store.Profiles().Update(ctx, toStore(p))
	if err != nil {
		return Profile{}, err
	}
	s.ReconcileAll()
	return fromStore(out), nil
}

// Delete deletes a profile; the keys it set are removed (or take the
// value of the next profile that sets them) by the reconcile it
// schedules.
func (s *Service) Delete(ctx context.Context, name string) error {
	if err := s.o.Store.Profiles().Delete(ctx, name); err != nil {
		return err
	}
	s.ReconcileAll()
	return nil
}

// KeyDiff is one key whose reported value is not the desired one.
type KeyDiff struct {
	Key      string          // dotted path
	Desired  json.RawMessage //
	Reported json.RawMessage // nil: not reported
}

// ThingCompliance is one thing's compliance with one profile.
type ThingCompliance struct {
	Thing     string
	Profile   string
	Priority  int
	Compliant bool
	Keys      int       // keys the profile decides for this thing
	Differing []KeyDiff // the keys whose reported value differs
}

// Compliance is a profile's compliance over the things it applies to.
type Compliance struct {
	Things, Compliant, NonCompliant int
	// Page is a page of the non-compliant things, by name; Next the
	// cursor of the next ("" at the end).
	Page []ThingCompliance
	Next string
}

func (s *Service) compliance(ctx context.Context, thing, profile string, leaves []Leaf) (ThingCompliance, error) {
	c := ThingCompliance{Thing: thing, Profile: profile, Compliant: true}
	var mine []Leaf
	for _, l := range leaves {
		if l.Profile == profile {
			mine = append(mine, l)
		}
	}
	c.Keys = len(mine)
	if len(mine) == 0 {
		return c, nil
	}
	_, reported, err := s.shadowState(ctx, thing)
	if err != nil {
		return c, err
	}
	for _, l := range mine {
		got, ok := lookup(reported, l.Path)
		if ok && string(got) == string(l.Value) {
			continue
		}
		c.Compliant = false
		d := KeyDiff{Key: l.Key(), Desired: l.Value}
		if ok {
			d.Reported = got
		}
		c.Differing = append(c.Differing, d)
	}
	return c, nil
}

// ProfileCompliance reports a profile's compliance: every thing it
// applied to is checked against its reported state; the non-compliant
// ones are listed by name, after the name after, at most limit.
func (s *Service) ProfileCompliance(ctx context.Context, name, after string, limit int) (Compliance, error) {
	if _, err := s.o.Store.Profiles().Get(ctx, name); err != nil {
		return Compliance{}, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	type item struct {
		thing  string
		leaves []Leaf
	}
	var items []item
	s.smu.RLock()
	for t, a := range s.state {
		if slices.Contains(a.profiles, name) {
			items = append(items, item{t, a.leaves})
		}
	}
	s.smu.RUnlock()
	sort.Slice(items, func(i, j int) bool { return items[i].thing < items[j].thing })
	var out Compliance
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return Compliance{}, err
		}
		c, err := s.compliance(ctx, it.thing, name, it.leaves)
		if err != nil {
			return Compliance{}, err
		}
		out.Things++
		if c.Compliant {
			out.Compliant++
			continue
		}
		out.NonCompliant++
		if strings.Compare(it.thing, after) > 0 || after == "" {
			if len(out.Page) < limit {
				out.Page = append(out.Page, c)
			} else if out.Next == "" && len(out.Page) > 0 {
				out.Next = out.Page[len(out.Page)-1].Thing
			}
		}
	}
	return out, nil
}

// ThingProfiles returns the profiles that apply to a thing (as last
// applied), by priority, with its compliance with each. An unknown thing
// is core.NotFound.
func (s *Service) ThingProfiles(ctx context.Context, thing string) ([]ThingCompliance, error) {
	if _, err := s.o.Store.Things().Get(ctx, thing); err != nil {
		return nil, err
	}
	s.smu.RLock()
	a := s.state[thing]
	s.smu.RUnlock()
	out := []ThingCompliance{}
	for _, name := range a.profiles {
		c, err := s.compliance(ctx, thing, name, a.leaves)
		if err != nil {
			return nil, err
		}
		if p, err := s.o.Store.Profiles().Get(ctx, name); err == nil {
			c.Priority = p.Priority
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Priority != out[j].Priority {
			return out[i].Priority > out[j].Priority
		}
		return out[i].Profile < out[j].Profile
	})
	return out, nil
}

// MaxSize is the configured limit of a profile document.
func (s *Service) MaxSize() int { return s.o.MaxSize }

func asCore(err error, ce **core.Error) bool { return errors.As(err, ce) }
