// Package registry is the device registry: things, thing types, static
// groups, policies, device credentials and API tokens. It validates what
// callers ask for, keeps it in the store, and tells listeners (the broker,
// the auth cache) about changes that affect live connections.
package registry

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/fleetquery"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/seal"
	"github.com/moteiot/mote/internal/store"
)

// EventKind says what changed.
type EventKind int

const (
	// ThingChanged: a thing was updated (enabled flag, type, groups or
	// policies may have changed). Thing is set.
	ThingChanged EventKind = iota + 1
	// ThingDeleted: a thing and its credentials are gone. Thing is set.
	ThingDeleted
	// CredentialRevoked: a credential was revoked or deleted. Thing and
	// Credential are set.
	CredentialRevoked
	// PoliciesChanged: a policy document or a type's policies changed; every
	// connected client's permissions must be recomputed.
	PoliciesChanged
	// ThingCreated: a thing was created. Thing is set.
	ThingCreated
	// GroupsChanged: a group was created, changed or deleted (a dynamic
	// group's query may have changed). Group is set when a group was
	// deleted: its things left it.
	GroupsChanged
	// CredentialRotated: a credential was replaced and stays valid until
	// Expires (the end of its rotation window); connections that use it
	// must be closed then. Thing, Credential and Expires are set.
	CredentialRotated
)

// Event is a change that may affect live connections.
type Event struct {
	Kind       EventKind
	Thing      string
	Enabled    bool // for ThingChanged
	Credential string
	Group      string    // for GroupsChanged: the deleted group
	Expires    time.Time // for CredentialRotated
}

// Registry is the device registry service.
type Registry struct {
	st     store.Store
	hasher *auth.Hasher
	ca     *pki.CA
	sealer *seal.Box // seals symmetricKey credentials (symmetrickey.go)
	log    *slog.Logger
	now    func() time.Time

	mu        sync.RWMutex
	listeners []func(Event)
	onCreated []func(thing string) // OnThingCreated

	touchMu sync.Mutex
	touched map[string]time.Time // token id → when its use was last recorded

	queryLimits fleetquery.Limits // dynamic groups' queries
	maxDynamic  int               // dynamic groups

	rotationWindow, maxRotationWindow time.Duration // rotate.go
	crl                               crlCache      // crl.go
}

// Options configure a Registry.
type Options struct {
	Store  store.Store
	Hasher *auth.Hasher
	CA     *pki.CA
	Logger *slog.Logger
	// Sealer seals the keys of symmetricKey credentials at rest; without
	// it they cannot be created.
	Sealer *seal.Box
	// QueryLimits bound a dynamic group's query; MaxDynamicGroups the
	// number of dynamic groups (0: 100).
	QueryLimits      fleetquery.Limits
	MaxDynamicGroups int
	// RotationWindow is how long a rotated credential stays valid beside
	// its replacement when the caller names no window (0: 24h);
	// MaxRotationWindow caps a window asked for (0: 30 days).
	RotationWindow    time.Duration
	MaxRotationWindow time.Duration
	// CRLValidity is the time from a CRL's thisUpdate to its nextUpdate
	// (0: 24h); the CRL is built again at half of it (crl.go).
	CRLValidity time.Duration
}

// New returns a Registry over the given store.
func New(o Options) *Registry {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if o.MaxDynamicGroups <= 0 {
		o.MaxDynamicGroups = 100
	}
	if o.RotationWindow <= 0 {
		o.RotationWindow = DefaultRotationWindow
	}
	if o.MaxRotationWindow <= 0 {
		o.MaxRotationWindow = DefaultMaxRotationWindow
	}
	if o.CRLValidity <= 0 {
		o.CRLValidity = DefaultCRLValidity
	}
	return &Registry{st: o.Store, hasher: o.Hasher, ca: o.CA, sealer: o.Sealer, log: log, now: time.Now, touched: make(map[string]time.Time),
		queryLimits: o.QueryLimits, maxDynamic: o.MaxDynamicGroups,
		rotationWindow: o.RotationWindow, maxRotationWindow: max(o.MaxRotationWindow, o.RotationWindow), crl: crlCache{validity: o.CRLValidity}}
}

// Store returns the underlying store.
func (r *Registry) Store() store.Store { return r.st }

// Listen registers fn to be called, synchronously and after the change is
// stored, for every Event. fn must not block.
func (r *Registry) Listen(fn func(Event)) {
	r.mu.Lock()
	r.listeners = append(r.listeners, fn)
	r.mu.Unlock()
}

func (r *Registry) emit(e Event) {
	r.mu.RLock()
	ls := r.listeners
	r.mu.RUnlock()
	for _, fn := range ls {
		fn(e)
	}
}

// Bootstrap creates what a fresh installation needs: the built-in default
// policy. It is idempotent.
func (r *Registry) Bootstrap(ctx context.Context) error {
	return r.ensureDefaultPolicy(ctx)
}
