package fleetquery

import "strconv"

// Postings are how an index narrows a query down before evaluating it.
// DocKeys lists the keys a thing has (its type, each attribute, its
// connection and enabled state, each static group and tag); Postings
// lists, for a query, groups of keys such that a matching thing has at
// least one key of every group. An index that keeps, per key, the things
// that have it can evaluate the query on the things of the smallest
// group only.

// DocKeys returns the posting keys of d.
func DocKeys(d *Doc) []string {
	keys := make([]string, 0, 3+len(d.Attributes)+len(d.Groups)+len(d.Tags))
	if d.Type != "" {
		keys = append(keys, "t\x00"+d.Type)
	}
	for k, v := range d.Attributes {
		keys = append(keys, "a\x00"+k+"\x00"+v)
	}
	keys = append(keys, "c\x00"+strconv.FormatBool(d.Connected), "e\x00"+strconv.FormatBool(d.Enabled))
	for _, g := range d.Groups {
		keys = append(keys, "g\x00"+g)
	}
	for _, t := range d.Tags {
		keys = append(keys, "s\x00"+t)
	}
	return keys
}

// Postings returns the key groups of q: one per term of its top-level AND
// that is an equality (or IN) on type, an attribute (with text),
// connected, enabled, groups or tags. None: q must be evaluated on every
// thing.
func (q *Query) Postings() [][]string {
	terms := []Expr{q.Root}
	if a, ok := q.Root.(*And); ok {
		terms = a.Terms
	}
	var out [][]string
	for _, t := range terms {
		if keys := postingKeys(t); keys != nil {
			out = append(out, keys)
		}
	}
	return out
}

func postingKeys(e Expr) []string {
	switch e := e.(type) {
	case *Compare:
		if e.Version || e.Op != "=" {
			return nil
		}
		f, err := resolve(e.Field)
		if err != nil {
			return nil
		}
		if k, ok := valueKey(f, e.Value); ok {
			return []string{k}
		}
	case *In:
		f, err := resolve(e.Field)
		if err != nil {
			return nil
		}
		keys := make([]string, 0, len(e.Values))
		for _, v := range e.Values {
			k, ok := valueKey(f, v)
			if !ok {
				return nil
			}
			keys = append(keys, k)
		}
		return keys
	}
	return nil
}

func valueKey(f field, v Value) (string, bool) {
	switch {
	case f.kind == kType && v.Kind == ValString:
		return "t\x00" + v.Str, true
	case f.kind == kAttr && v.Kind == ValString:
		return "a\x00" + f.key + "\x00" + v.Str, true
	case f.kind == kConnected && v.Kind == ValBool:
		return "c\x00" + strconv.FormatBool(v.Bool), true
	case f.kind == kEnabled && v.Kind == ValBool:
		return "e\x00" + strconv.FormatBool(v.Bool), true
	case f.kind == kGroups && v.Kind == ValString:
		return "g\x00" + v.Str, true
	case f.kind == kTags && v.Kind == ValString:
		return "s\x00" + v.Str, true
	}
	return "", false
}
