package devicemodel

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// maxStoredSize bounds a stored model that is compiled again (it was
// checked against --type-model-max-size when it was set, which may have
// been larger then).
const maxStoredSize = 16 << 20

// maxCached bounds the types whose compiled model is kept.
const maxCached = 10_000

// Models caches the compiled model of each thing type: a model is
// compiled once and again only when the stored JSON changes.
type Models struct {
	types store.TypeStore
	ttl   time.Duration
	now   func() time.Time

	mu sync.Mutex
	m  map[string]*cached
}

type cached struct {
	c       *Compiled // nil: the type has no model (or it does not compile)
	raw     []byte
	fetched time.Time
}

// NewModels returns a cache over types; ttl is how long a cached model is
// used without reading the type again by Of(ctx, typ, false) (default
// 10s).
func NewModels(types store.TypeStore, ttl time.Duration) *Models {
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	return &Models{types: types, ttl: ttl, now: time.Now, m: map[string]*cached{}}
}

// Of returns the compiled model of the type typ: nil when typ is "", the
// type does not exist or has no model. fresh reads the type (the API,
// right after a change must see it); otherwise a model read within the
// TTL is used (the monitor).
func (ms *Models) Of(ctx context.Context, typ string, fresh bool) (*Compiled, error) {
	if typ == "" || ms == nil {
		return nil, nil
	}
	now := ms.now()
	ms.mu.Lock()
	e := ms.m[typ]
	ms.mu.Unlock()
	if e != nil && !fresh && now.Sub(e.fetched) < ms.ttl {
		return e.c, nil
	}
	t, err := ms.types.Get(ctx, typ)
	if core.IsNotFound(err) {
		ms.Forget(typ)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if e != nil && bytes.Equal(e.raw, t.Model) {
		ms.put(typ, &cached{c: e.c, raw: e.raw, fetched: now})
		return e.c, nil
	}
	var c *Compiled
	if len(t.Model) > 0 {
		// A stored model that does not compile (set by an older version)
		// counts as none rather than failing every request of the type.
		c, _ = Parse(t.Model, maxStoredSize)
	}
	ms.put(typ, &cached{c: c, raw: t.Model, fetched: now})
	return c, nil
}

func (ms *Models) put(typ string, e *cached) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if _, ok := ms.m[typ]; !ok && len(ms.m) >= maxCached {
		clear(ms.m)
	}
	ms.m[typ] = e
}

// Forget drops the cached model of a type (it was changed or deleted).
func (ms *Models) Forget(typ string) {
	if ms == nil {
		return
	}
	ms.mu.Lock()
	delete(ms.m, typ)
	ms.mu.Unlock()
}

// ExpectedInterval is the expected interval of a telemetry key in the
// model of a type (key "": the largest of its keys; 0: none), from the
// cache (analytics' silence detector).
func (ms *Models) ExpectedInterval(ctx context.Context, typ, key string) time.Duration {
	c, err := ms.Of(ctx, typ, false)
	if err != nil || c == nil {
		return 0
	}
	return c.Interval(key)
}
