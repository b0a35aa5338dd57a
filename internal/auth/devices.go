package auth

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"sync"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/seal"
	"github.com/moteiot/mote/internal/store"
)

// Reasons a device is refused. The MQTT edge maps them to CONNACK reason
// codes; none of them carries the secret.
var (
	ErrBadSecret          = &core.Error{Kind: core.KindUnauthorized, Msg: "bad user name or secret"}
	ErrUnknownCertificate = &core.Error{Kind: core.KindUnauthorized, Msg: "certificate not registered"}
	ErrInvalidCertificate = &core.Error{Kind: core.KindUnauthorized, Msg: "certificate not valid"}
	ErrRevoked            = &core.Error{Kind: core.KindUnauthorized, Msg: "credential revoked"}
	ErrExpired            = &core.Error{Kind: core.KindUnauthorized, Msg: "credential expired"}
	ErrDisabled           = &core.Error{Kind: core.KindForbidden, Msg: "thing disabled"}
)

// Identity is who an authenticated device is.
type Identity struct {
	Thing      string
	Credential string // credential id
	Method     string // store.CredentialSecret or store.CredentialX509
	Type       string // the thing's type
	// Expires is when the credential stops being valid (a certificate's
	// NotAfter); zero: never. A connection must not outlive it.
	Expires time.Time
}

// Devices authenticates devices against the registry's credentials. A
// successful lookup is cached until a registry change for that thing (call
// Invalidate), so a reconnect storm costs one keyed hash per connection.
type Devices struct {
	st     store.Store
	hasher *Hasher
	ca     *pki.CA
	now    func() time.Time
	sealer *seal.Box // opens symmetricKey credentials (sas.go)

	mu    sync.Mutex
	gen   uint64                // bumped by every invalidation
	cache map[string]cacheEntry // key: secret hash or "x509:"+fingerprint
}

type cacheEntry struct {
	id       Identity
	notAfter *time.Time
}

// maxCache bounds the cache; when full it is cleared (simple and rare).
const maxCache = 200_000

// NewDevices returns a device authenticator.
func NewDevices(st store.Store, h *Hasher, ca *pki.CA) *Devices {
	return &Devices{st: st, hasher: h, ca: ca, now: time.Now, cache: make(map[string]cacheEntry)}
}

// Invalidate drops every cached identity of a thing ("" drops all).
func (d *Devices) Invalidate(thing string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if thing == "" {
		clear(d.cache)
		return
	}
	for k, e := range d.cache {
		if e.id.Thing == thing {
			delete(d.cache, k)
		}
	}
}

// Secret authenticates a device by user name (its thing name) and secret.
func (d *Devices) Secret(ctx context.Context, username, secret string) (Identity, error) {
	if username == "" || secret == "" {
		return Identity{}, ErrBadSecret
	}
	hash := d.hasher.Hash(secret)
	key := string(hash)
	if id, ok := d.cached(key); ok {
		if id.Thing != username {
			return Identity{}, ErrBadSecret
		}
		return id, nil
	}
	gen := d.generation()
	c, err := d.st.Credentials().FindSecret(ctx, hash)
	if core.IsNotFound(err) {
		return Identity{}, ErrBadSecret
	}
	if err != nil {
		return Identity{}, err
	}
	// The lookup was by hash; compare in constant time anyway, and check
	// that the secret belongs to the thing named.
	if subtle.ConstantTimeCompare(c.SecretHash, hash) != 1 || c.Thing != username {
		return Identity{}, ErrBadSecret
	}
	id, err := d.check(ctx, c)
	if err != nil {
		return Identity{}, err
	}
	d.remember(gen, key, id, c.NotAfter)
	return id, nil
}

// Certificate authenticates a device by the client certificate it
// presented over TLS: it must chain to the CA and be registered.
func (d *Devices) Certificate(ctx context.Context, cert *x509.Certificate) (Identity, error) {
	if err := d.ca.VerifyClient(cert, d.now()); err != nil {
		return Identity{}, ErrInvalidCertificate
	}
	fp := pki.Fingerprint(cert)
	key := "x509:" + fp
	if id, ok := d.cached(key); ok {
		return id, nil
	}
	gen := d.generation()
	c, err := d.st.Credentials().FindCertificate(ctx, fp)
	if core.IsNotFound(err) {
		return Identity{}, ErrUnknownCertificate
	}
	if err != nil {
		return Identity{}, err
	}
	id, err := d.check(ctx, c)
	if err != nil {
		return Identity{}, err
	}
	d.remember(gen, key, id, c.NotAfter)
	return id, nil
}

func (d *Devices) check(ctx context.Context, c store.Credential) (Identity, error) {
	if c.Revoked {
		return Identity{}, ErrRevoked
	}
	if c.NotAfter != nil && !c.NotAfter.After(d.now()) {
		return Identity{}, ErrExpired
	}
	t, err := d.st.Things().Get(ctx, c.Thing)
	if core.IsNotFound(err) {
		return Identity{}, ErrBadSecret
	}
	if err != nil {
		return Identity{}, err
	}
	if !t.Enabled {
		return Identity{}, ErrDisabled
	}
	id := Identity{Thing: t.Name, Credential: c.ID, Method: c.Type, Type: t.Type}
	if c.NotAfter != nil {
		id.Expires = *c.NotAfter
	}
	return id, nil
}

func (d *Devices) cached(key string) (Identity, bool) {
	d.mu.Lock()
	e, ok := d.cache[key]
	d.mu.Unlock()
	if !ok || (e.notAfter != nil && !e.notAfter.After(d.now())) {
		return Identity{}, false
	}
	return e.id, true
}

func (d *Devices) generation() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gen
}

// remember caches an identity unless an invalidation happened since the
// lookup began (the lookup may have read the state from before it).
func (d *Devices) remember(gen uint64, key string, id Identity, notAfter *time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gen != gen {
		return
	}
	if len(d.cache) >= maxCache {
		clear(d.cache)
	}
	d.cache[key] = cacheEntry{id: id, notAfter: notAfter}
}

// IsRefusal reports whether err is one of the refusal reasons above (as
// opposed to a store failure).
func IsRefusal(err error) bool {
	for _, e := range []error{ErrBadSecret, ErrUnknownCertificate, ErrInvalidCertificate, ErrRevoked, ErrExpired, ErrDisabled, ErrSASWrongDevice, ErrSASExpired} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
