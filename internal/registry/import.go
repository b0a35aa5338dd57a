package registry

import (
	"context"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// CheckNewThing checks a thing as CreateThing would, without the store:
// its name, type name, attributes, tags, groups and policies.
func CheckNewThing(t store.Thing) error {
	if err := core.ValidateName("name", t.Name); err != nil {
		return err
	}
	if t.Type != "" {
		if err := core.ValidateName("type", t.Type); err != nil {
			return err
		}
	}
	return validateMeta(t.Attributes, t.Tags, t.Groups, t.Policies)
}

// GetThings returns those of the named things that exist, by name: one
// store read per few hundred names (bulk import's existence check).
func (r *Registry) GetThings(ctx context.Context, names []string) (map[string]store.Thing, error) {
	list, err := r.st.Things().GetMany(ctx, names)
	if err != nil {
		return nil, err
	}
	out := make(map[string]store.Thing, len(list))
	for _, t := range list {
		out[t.Name] = t
	}
	return out, nil
}

// ImportedSecret is the secret credential made for an imported thing,
// shown once.
type ImportedSecret struct {
	Thing, CredentialID, Secret string
}

// CreateThings creates things in one store transaction, all or none (bulk
// import, internal/thingimport), with a fresh secret credential for each
// thing whose index has withSecret set. Every thing is checked as
// CreateThing checks it; the first that fails fails the batch.
func (r *Registry) CreateThings(ctx context.Context, things []store.Thing, withSecret []bool) ([]ImportedSecret, error) {
	var creds []store.Credential
	var secrets []ImportedSecret
	for i := range things {
		t := &things[i]
		if err := CheckNewThing(*t); err != nil {
			return nil, core.Errorf(core.KindOf(err), "thing %q: %v", t.Name, err)
		}
		t.Connected, t.LastSeen = false, nil
		if i < len(withSecret) && withSecret[i] {
			secret := auth.NewSecret()
			c := store.Credential{ID: auth.NewID("cred"), Thing: t.Name, Type: store.CredentialSecret, SecretHash: r.hasher.Hash(secret)}
			creds = append(creds, c)
			secrets = append(secrets, ImportedSecret{Thing: t.Name, CredentialID: c.ID, Secret: secret})
		}
	}
	if err := r.st.Things().CreateMany(ctx, things, creds); err != nil {
		return nil, err
	}
	r.mu.RLock()
	ls := r.onCreated
	r.mu.RUnlock()
	for _, t := range things {
		r.emit(Event{Kind: ThingCreated, Thing: t.Name, Enabled: t.Enabled})
		for _, fn := range ls {
			fn(t.Name)
		}
	}
	return secrets, nil
}
