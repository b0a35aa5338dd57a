package registry

import (
	"context"
	"encoding/json"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/policy"
	"github.com/moteiot/mote/internal/store"
)

// DefaultPolicy is the built-in policy every thing has: it may use its own
// topics and nothing else. It can be edited but not deleted.
const DefaultPolicy = "default"

// MaxDescription bounds the description of a policy, type or group, in bytes.
const MaxDescription = 1024

func validateDescription(d string) error {
	if len(d) > MaxDescription {
		return core.Invalid("description", "description is longer than %d bytes", MaxDescription)
	}
	return nil
}

// Policy is a stored policy with its document decoded.
type Policy struct {
	store.Policy
	Document policy.Document `json:"document"`
}

func decodePolicy(p store.Policy) (Policy, error) {
	var d policy.Document
	if err := json.Unmarshal(p.Document, &d); err != nil {
		return Policy{}, core.Errorf(core.KindInternal, "policy %q: stored document is corrupt: %v", p.Name, err)
	}
	return Policy{Policy: p, Document: d}, nil
}

func (r *Registry) ensureDefaultPolicy(ctx context.Context) error {
	_, err := r.st.Policies().Get(ctx, DefaultPolicy)
	if err == nil || !core.IsNotFound(err) {
		return err
	}
	doc, _ := json.Marshal(policy.DefaultDocument())
	_, err = r.st.Policies().Create(ctx, store.Policy{
		Name:        DefaultPolicy,
		Description: "Applies to every thing: publish, subscribe and receive on its own topics (things/${thing}/#, $mote/things/${thing}/#, $aws/things/${thing}/#).",
		Document:    doc,
		Builtin:     true,
	})
	if core.KindOf(err) == core.KindConflict {
		return nil // created concurrently
	}
	return err
}

// CreatePolicy validates and stores a policy.
func (r *Registry) CreatePolicy(ctx context.Context, name, description string, doc policy.Document) (Policy, error) {
	if err := core.ValidateName("name", name); err != nil {
		return Policy{}, err
	}
	if err := validateDescription(description); err != nil {
		return Policy{}, err
	}
	if err := doc.Validate(); err != nil {
		return Policy{}, err
	}
	raw, _ := json.Marshal(doc)
	p, err := r.st.Policies().Create(ctx, store.Policy{Name: name, Description: description, Document: raw})
	if err != nil {
		return Policy{}, err
	}
	return decodePolicy(p)
}

// GetPolicy returns one policy.
func (r *Registry) GetPolicy(ctx context.Context, name string) (Policy, error) {
	p, err := r.st.Policies().Get(ctx, name)
	if err != nil {
		return Policy{}, err
	}
	return decodePolicy(p)
}

// ListPolicies returns a page of policies and the next cursor.
func (r *Registry) ListPolicies(ctx context.Context, after string, limit int) ([]Policy, string, error) {
	ps, next, err := page(after, limit, func(after string, n int) ([]store.Policy, error) { return r.st.Policies().List(ctx, after, n) },
		func(p store.Policy) string { return p.Name })
	if err != nil {
		return nil, "", err
	}
	out := make([]Policy, 0, len(ps))
	for _, p := range ps {
		d, err := decodePolicy(p)
		if err != nil {
			return nil, "", err
		}
		out = append(out, d)
	}
	return out, next, nil
}

// UpdatePolicy replaces a policy's description and document; connected
// clients get the new permissions at once.
func (r *Registry) UpdatePolicy(ctx context.Context, name, description string, doc policy.Document) (Policy, error) {
	if err := validateDescription(description); err != nil {
		return Policy{}, err
	}
	if err := doc.Validate(); err != nil {
		return Policy{}, err
	}
	raw, _ := json.Marshal(doc)
	p, err := r.st.Policies().Update(ctx, store.Policy{Name: name, Description: description, Document: raw})
	if err != nil {
		return Policy{}, err
	}
	r.emit(Event{Kind: PoliciesChanged})
	return decodePolicy(p)
}

// DeletePolicy deletes a policy and detaches it everywhere. The default
// policy cannot be deleted.
func (r *Registry) DeletePolicy(ctx context.Context, name string) error {
	if name == DefaultPolicy {
		// Checked here, not only by the store's built-in flag: a policy
		// named "default" stored before Bootstrap is not flagged, yet
		// Bootstrap adopts it as the default policy.
		return core.Conflict("policy %q is built in and cannot be deleted", name)
	}
	if err := r.st.Policies().Delete(ctx, name); err != nil {
		return err
	}
	r.emit(Event{Kind: PoliciesChanged})
	return nil
}

// EffectivePolicies returns the documents that apply to a thing, in order:
// the default policy, the policies of its type, then its own.
func (r *Registry) EffectivePolicies(ctx context.Context, t store.Thing) ([]policy.Document, error) {
	names := []string{DefaultPolicy}
	if t.Type != "" {
		tt, err := r.st.Types().Get(ctx, t.Type)
		if err != nil && !core.IsNotFound(err) {
			return nil, err
		}
		names = append(names, tt.Policies...)
	}
	names = append(names, t.Policies...)
	ps, err := r.st.Policies().GetMany(ctx, dedup(names))
	if err != nil {
		return nil, err
	}
	docs := make([]policy.Document, 0, len(ps))
	for _, p := range ps {
		d, err := decodePolicy(p)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d.Document)
	}
	return docs, nil
}

func dedup(s []string) []string {
	seen := make(map[string]bool, len(s))
	out := s[:0:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// PoliciesFor returns the policy documents that apply to the named thing.
func (r *Registry) PoliciesFor(ctx context.Context, thing string) ([]policy.Document, error) {
	t, err := r.st.Things().Get(ctx, thing)
	if err != nil {
		return nil, err
	}
	return r.EffectivePolicies(ctx, t)
}
