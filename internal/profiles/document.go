package profiles

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/moteiot/mote/internal/core"
)

// MaxDepth bounds how deeply a profile document nests objects.
const MaxDepth = 8

// Leaf is one key a profile sets: its path of object keys and its value
// (canonical JSON: a scalar, an array, never an object).
type Leaf struct {
	Path    []string        `json:"path"`
	Value   json.RawMessage `json:"value"`
	Profile string          `json:"profile,omitempty"` // who set it (in a merge)
}

// Key is the leaf's path joined with dots, for display.
func (l Leaf) Key() string { return strings.Join(l.Path, ".") }

func pathKey(p []string) string { return strings.Join(p, "\x00") }

// ParseDocument checks a profile's desired-state fragment: a JSON object
// of at most maxSize bytes, nested at most MaxDepth deep, with no nulls
// (null deletes in a shadow update), no empty keys and no empty nested
// objects. It returns its leaves in key order. Errors are core.KindInvalid
// for field "desired" (core.KindTooLarge for the size).
func ParseDocument(b []byte, maxSize int) ([]Leaf, error) {
	if maxSize > 0 && len(b) > maxSize {
		return nil, &core.Error{Kind: core.KindTooLarge, Field: "desired", Msg: fmt.Sprintf("the profile document is %d bytes; the limit is %d (--profile-max-size)", len(b), maxSize)}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, core.Invalid("desired", "desired is not valid JSON: %v", err)
	}
	if dec.More() {
		return nil, core.Invalid("desired", "desired has data after the JSON object")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, core.Invalid("desired", "desired must be a JSON object")
	}
	var out []Leaf
	if err := flatten(obj, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func flatten(obj map[string]any, path []string, out *[]Leaf) error {
	if len(path) >= MaxDepth {
		return core.Invalid("desired", "desired nests deeper than %d levels at %q", MaxDepth, strings.Join(path, "."))
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "" {
			return core.Invalid("desired", "desired has an empty key under %q", strings.Join(path, "."))
		}
		p := append(slices.Clip(path), k)
		switch v := obj[k].(type) {
		case nil:
			return core.Invalid("desired", "desired.%s is null; a profile sets values (remove the key instead)", strings.Join(p, "."))
		case map[string]any:
			if len(v) == 0 {
				return core.Invalid("desired", "desired.%s is an empty object", strings.Join(p, "."))
			}
			if err := flatten(v, p, out); err != nil {
				return err
			}
		default:
			c, err := canonical(v)
			if err != nil {
				return core.Invalid("desired", "desired.%s: %v", strings.Join(p, "."), err)
			}
			*out = append(*out, Leaf{Path: p, Value: c})
		}
	}
	return nil
}

// canonical encodes a decoded JSON value so that equal values have equal
// bytes: numbers as float64 (60 and 60.0 are the same), object keys
// sorted.
func canonical(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var f any
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	return json.Marshal(f)
}

// lookup returns the value at path in a decoded object, canonical, and
// whether it is there.
func lookup(obj map[string]any, path []string) (json.RawMessage, bool) {
	var cur any = obj
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	c, err := canonical(cur)
	if err != nil {
		return nil, false
	}
	return c, true
}

// setPath sets path to v in obj, creating objects on the way.
func setPath(obj map[string]any, path []string, v any) {
	for _, k := range path[:len(path)-1] {
		next, ok := obj[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			obj[k] = next
		}
		obj = next
	}
	obj[path[len(path)-1]] = v
}

// Applying is one profile that applies to a thing, for Merge.
type Applying struct {
	Name     string
	Priority int
	Leaves   []Leaf
}

// Merge merges the leaves of the profiles that apply to a thing: a higher
// priority wins each key, equal priorities are decided by name (the
// lower name in byte order wins). A key also conflicts with the keys
// under it (a profile setting wifi beats one setting wifi.ssid when it
// ranks higher, and the other way round). The result is in path order,
// each leaf naming the profile that set it.
func Merge(ps []Applying) []Leaf {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b Applying) int {
		if a.Priority != b.Priority {
			if a.Priority > b.Priority {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	leaves := map[string]struct{}{}   // paths taken as leaves
	interior := map[string]struct{}{} // prefixes of taken leaves
	var out []Leaf
	for _, p := range ps {
	next:
		for _, l := range p.Leaves {
			k := pathKey(l.Path)
			if _, ok := interior[k]; ok {
				continue
			}
			for i := 1; i <= len(l.Path); i++ {
				if _, ok := leaves[pathKey(l.Path[:i])]; ok {
					continue next
				}
			}
			leaves[k] = struct{}{}
			for i := 1; i < len(l.Path); i++ {
				interior[pathKey(l.Path[:i])] = struct{}{}
			}
			out = append(out, Leaf{Path: l.Path, Value: l.Value, Profile: p.Name})
		}
	}
	slices.SortFunc(out, func(a, b Leaf) int { return slices.Compare(a.Path, b.Path) })
	return out
}

// ParseQuery-free target check: exactly one of group and query.
func checkTarget(group, query string) error {
	switch {
	case group == "" && query == "":
		return core.Invalid("target", "target needs a group or a query")
	case group != "" && query != "":
		return core.Invalid("target", "target takes a group or a query, not both")
	case group != "":
		return core.ValidateName("target.group", group)
	}
	return nil
}
