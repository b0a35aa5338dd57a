package sqlite

import (
	"cmp"
	"math"
	"slices"
	"sync"
)

// unloaded marks a series whose last timestamp has not been read yet.
const unloaded = math.MinInt64

// series is one row of the series table, plus what the writer knows of
// its last point.
type series struct {
	id         int64
	thing, key string

	// Writer state, guarded by Store.wmu.
	lastTS  int64  // largest ts stored; unloaded, or -1 when there is none
	lastN   int64  // largest n at lastTS
	touched uint64 // the Append that last changed lastTS/lastN (for undo)
	grp     int    // the series' place among those of that Append
}

// seriesCache holds every series of the database. The writer (holding
// Store.wmu) is the only one that changes it, under mu; it may read it
// without mu. Readers take mu.RLock.
type seriesCache struct {
	mu      sync.RWMutex
	byThing map[string]map[string]*series
}

func (c *seriesCache) init() { c.byThing = make(map[string]map[string]*series) }

// add adds sr; the caller holds mu (or is Open).
func (c *seriesCache) add(sr *series) {
	m := c.byThing[sr.thing]
	if m == nil {
		m = make(map[string]*series)
		c.byThing[sr.thing] = m
	}
	m[sr.key] = sr
}

// remove removes sr; the caller holds mu.
func (c *seriesCache) remove(sr *series) {
	m := c.byThing[sr.thing]
	delete(m, sr.key)
	if len(m) == 0 {
		delete(c.byThing, sr.thing)
	}
}

// seriesRef is what a query needs of a series.
type seriesRef struct {
	thing, key string
	id         int64
}

func compareRef(a, b seriesRef) int {
	if c := cmp.Compare(a.thing, b.thing); c != 0 {
		return c
	}
	return cmp.Compare(a.key, b.key)
}

// selectSeries returns the series of the given things and keys (all keys
// if keys is empty) ordered by (thing, key).
func (c *seriesCache) selectSeries(things, keys []string) []seriesRef {
	var out []seriesRef
	c.mu.RLock()
	for _, t := range things {
		m := c.byThing[t]
		if len(m) == 0 {
			continue
		}
		if len(keys) == 0 {
			for _, sr := range m {
				out = append(out, seriesRef{sr.thing, sr.key, sr.id})
			}
			continue
		}
		for _, k := range keys {
			if sr := m[k]; sr != nil {
				out = append(out, seriesRef{sr.thing, sr.key, sr.id})
			}
		}
	}
	c.mu.RUnlock()
	slices.SortFunc(out, compareRef)
	// Things or keys named twice select a series twice.
	return slices.CompactFunc(out, func(a, b seriesRef) bool { return a.id == b.id })
}

// keys returns the keys of thing, sorted.
func (c *seriesCache) keys(thing string) []string {
	c.mu.RLock()
	m := c.byThing[thing]
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	c.mu.RUnlock()
	slices.Sort(out)
	return out
}

// all returns every series, for retention.
func (c *seriesCache) all() []*series {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*series
	for _, m := range c.byThing {
		for _, sr := range m {
			out = append(out, sr)
		}
	}
	slices.SortFunc(out, func(a, b *series) int { return cmp.Compare(a.id, b.id) })
	return out
}
