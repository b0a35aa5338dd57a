package fleetquery

import (
	"strconv"
	"strings"
	"time"
)

// Doc is what a query sees of one thing.
type Doc struct {
	Name       string
	Type       string
	Attributes map[string]string
	Tags       []string
	Groups     []string // static groups
	Connected  bool
	Enabled    bool
	LastSeen   time.Time // zero: never seen
	// Shadows by name ("" is the classic shadow).
	Shadows map[string]*Shadow
	// Telemetry is the latest value of each telemetry key: float64,
	// string or bool.
	Telemetry map[string]any
}

// Shadow is the state of one shadow as decoded JSON (objects are
// map[string]any, numbers float64).
type Shadow struct {
	Reported map[string]any
	Desired  map[string]any
}

// Match reports whether d matches q, with now() read as now.
func (q *Query) Match(d *Doc, now time.Time) bool { return q.match(d, now) }

type matcher func(d *Doc, now time.Time) bool

// Fields is the list of fields, for error messages and the docs.
const Fields = "name, type, groups, tags, attributes.KEY, connected, enabled, lastSeen, " +
	"shadow.reported.PATH, shadow.desired.PATH, shadow.name.SHADOW.reported.PATH, shadow.name.SHADOW.desired.PATH, telemetry.KEY"

type fieldKind int

const (
	kName fieldKind = iota + 1
	kType
	kGroups
	kTags
	kAttr
	kConnected
	kEnabled
	kLastSeen
	kShadow
	kTelemetry
)

// field is a resolved field: how to read it from a Doc.
type field struct {
	kind    fieldKind
	key     string   // attribute or telemetry key
	shadow  string   // shadow name
	desired bool     // desired rather than reported
	path    []string // inside the shadow state
	src     Field
}

func resolve(f Field) (field, error) {
	p := f.Path
	bad := func(msg string) (field, error) {
		return field{}, f.at.errorf("%s; fields are %s", msg, Fields)
	}
	simple := map[string]fieldKind{"name": kName, "type": kType, "groups": kGroups, "tags": kTags,
		"connected": kConnected, "enabled": kEnabled, "lastSeen": kLastSeen}
	if k, ok := simple[p[0]]; ok {
		if len(p) != 1 {
			return bad("field " + p[0] + " has no sub-fields")
		}
		return field{kind: k, src: f}, nil
	}
	switch p[0] {
	case "attributes", "telemetry":
		if len(p) < 2 {
			return bad(p[0] + " needs a key, as in " + p[0] + ".site")
		}
		k := kAttr
		if p[0] == "telemetry" {
			k = kTelemetry
		}
		return field{kind: k, key: strings.Join(p[1:], "."), src: f}, nil
	case "shadow":
		rest, name := p[1:], ""
		if len(rest) > 0 && rest[0] == "name" {
			if len(rest) < 2 {
				return bad("shadow.name needs the shadow's name, as in shadow.name.config.reported.x")
			}
			name, rest = rest[1], rest[2:]
		}
		if len(rest) < 2 || rest[0] != "reported" && rest[0] != "desired" {
			return bad("a shadow field is shadow[.name.SHADOW].reported.PATH or .desired.PATH")
		}
		return field{kind: kShadow, shadow: name, desired: rest[0] == "desired", path: rest[1:], src: f}, nil
	}
	return bad("unknown field " + strconv.Quote(f.String()))
}

// get returns the field's value: string, float64, bool, time.Time,
// []string, or (shadows) any decoded JSON; ok is false when it has none.
func (f *field) get(d *Doc) (any, bool) {
	switch f.kind {
	case kName:
		return d.Name, true
	case kType:
		return d.Type, d.Type != ""
	case kGroups:
		return d.Groups, true
	case kTags:
		return d.Tags, true
	case kAttr:
		v, ok := d.Attributes[f.key]
		return v, ok
	case kConnected:
		return d.Connected, true
	case kEnabled:
		return d.Enabled, true
	case kLastSeen:
		return d.LastSeen, !d.LastSeen.IsZero()
	case kTelemetry:
		v, ok := d.Telemetry[f.key]
		return v, ok
	case kShadow:
		s := d.Shadows[f.shadow]
		if s == nil {
			return nil, false
		}
		m := s.Reported
		if f.desired {
			m = s.Desired
		}
		var v any = m
		for _, k := range f.path {
			o, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = o[k]; !ok {
				return nil, false
			}
		}
		return v, v != nil
	}
	return nil, false
}

func compile(e Expr) (matcher, error) {
	switch e := e.(type) {
	case *And:
		ms, err := compileAll(e.Terms)
		if err != nil {
			return nil, err
		}
		return func(d *Doc, now time.Time) bool {
			for _, m := range ms {
				if !m(d, now) {
					return false
				}
			}
			return true
		}, nil
	case *Or:
		ms, err := compileAll(e.Terms)
		if err != nil {
			return nil, err
		}
		return func(d *Doc, now time.Time) bool {
			for _, m := range ms {
				if m(d, now) {
					return true
				}
			}
			return false
		}, nil
	case *Not:
		m, err := compile(e.X)
		if err != nil {
			return nil, err
		}
		return func(d *Doc, now time.Time) bool { return !m(d, now) }, nil
	case *Exists:
		f, err := resolve(e.Field)
		if err != nil {
			return nil, err
		}
		return func(d *Doc, _ time.Time) bool { _, ok := f.get(d); return ok }, nil
	case *Compare:
		return compileCompare(e)
	case *In:
		return compileIn(e)
	case *Like:
		return compileLike(e)
	}
	panic("fleetquery: unknown node")
}

func compileAll(es []Expr) ([]matcher, error) {
	ms := make([]matcher, len(es))
	for i, e := range es {
		m, err := compile(e)
		if err != nil {
			return nil, err
		}
		ms[i] = m
	}
	return ms, nil
}

func kindName(k fieldKind) string {
	switch k {
	case kName, kType, kAttr:
		return "text"
	case kGroups, kTags:
		return "a set of names"
	case kConnected, kEnabled:
		return "true or false"
	case kLastSeen:
		return "a time"
	}
	return "a value"
}

func compileCompare(e *Compare) (matcher, error) {
	f, err := resolve(e.Field)
	if err != nil {
		return nil, err
	}
	v, op := e.Value, e.Op
	mismatch := func() (matcher, error) {
		return nil, v.at.errorf("%s is %s: it cannot be compared with %s using %s", e.Field, kindName(f.kind), describeValue(v), op)
	}
	ordering := op != "=" && op != "!="
	if e.Version {
		switch f.kind {
		case kGroups, kTags, kConnected, kEnabled, kLastSeen:
			return nil, e.Field.at.errorf("version() reads a version string; %s is %s", e.Field, kindName(f.kind))
		}
		var want string
		switch v.Kind {
		case ValString:
			want = v.Str
		case ValNumber:
			want = v.text
		default:
			return nil, v.at.errorf("version() is compared with a version such as '1.5.2', not %s", describeValue(v))
		}
		return func(d *Doc, _ time.Time) bool {
			x, ok := f.get(d)
			if !ok {
				return false
			}
			var s string
			switch x := x.(type) {
			case string:
				s = x
			case float64:
				s = strconv.FormatFloat(x, 'f', -1, 64)
			default:
				return op == "!="
			}
			return test(op, CompareVersions(s, want))
		}, nil
	}
	if v.Kind == ValNow && f.kind != kLastSeen {
		return nil, v.at.errorf("now() can only be compared with lastSeen")
	}
	switch f.kind {
	case kName, kType:
		if v.Kind != ValString {
			return mismatch()
		}
		want := v.Str
		// Direct reads, no boxing: these run once per thing per query.
		if f.kind == kName {
			if op == "=" {
				return func(d *Doc, _ time.Time) bool { return d.Name == want }, nil
			}
			return func(d *Doc, _ time.Time) bool { return test(op, strings.Compare(d.Name, want)) }, nil
		}
		if op == "=" {
			return func(d *Doc, _ time.Time) bool { return d.Type == want }, nil
		}
		return func(d *Doc, _ time.Time) bool { return d.Type != "" && test(op, strings.Compare(d.Type, want)) }, nil
	case kGroups, kTags:
		if v.Kind != ValString || ordering {
			return mismatch()
		}
		want, eq := v.Str, op == "="
		return func(d *Doc, _ time.Time) bool {
			x, _ := f.get(d)
			return contains(x.([]string), want) == eq
		}, nil
	case kConnected, kEnabled:
		if v.Kind != ValBool || ordering {
			return mismatch()
		}
		want := v.Bool == (op == "=") // the value that matches
		if f.kind == kConnected {
			return func(d *Doc, _ time.Time) bool { return d.Connected == want }, nil
		}
		return func(d *Doc, _ time.Time) bool { return d.Enabled == want }, nil
	case kLastSeen:
		var at time.Time
		switch v.Kind {
		case ValNow:
		case ValString:
			t, err := time.Parse(time.RFC3339Nano, v.Str)
			if err != nil {
				return nil, v.at.errorf("lastSeen is compared with now() - DURATION or an RFC 3339 time such as '2026-12-01T00:00:00Z', not %s", describeValue(v))
			}
			at = t
		default:
			return mismatch()
		}
		isNow, off := v.Kind == ValNow, v.Offset
		return func(d *Doc, now time.Time) bool {
			x, ok := f.get(d)
			if !ok {
				return false
			}
			want := at
			if isNow {
				want = now.Add(off)
			}
			return test(op, x.(time.Time).Compare(want))
		}, nil
	case kAttr, kShadow, kTelemetry:
		if v.Kind == ValBool && (ordering || f.kind == kAttr) {
			return mismatch()
		}
		if f.kind == kAttr && v.Kind == ValString {
			key, want := f.key, v.Str
			return func(d *Doc, _ time.Time) bool {
				x, ok := d.Attributes[key]
				return ok && test(op, strings.Compare(x, want))
			}, nil
		}
		return func(d *Doc, _ time.Time) bool {
			x, ok := f.get(d)
			if !ok {
				return false
			}
			c, comparable := compareDynamic(x, v)
			if !comparable {
				return op == "!="
			}
			return test(op, c)
		}, nil
	}
	return mismatch()
}

// compareDynamic compares a JSON or attribute value with a literal: text
// with text, numbers with numbers (an attribute or a string holding a
// number is read as one when compared with a number), booleans with
// booleans.
func compareDynamic(x any, v Value) (int, bool) {
	switch v.Kind {
	case ValString:
		if s, ok := x.(string); ok {
			return strings.Compare(s, v.Str), true
		}
	case ValNumber:
		var n float64
		switch x := x.(type) {
		case float64:
			n = x
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return 0, false
			}
			n = f
		default:
			return 0, false
		}
		switch {
		case n < v.Num:
			return -1, true
		case n > v.Num:
			return 1, true
		}
		return 0, true
	case ValBool:
		if b, ok := x.(bool); ok {
			if b == v.Bool {
				return 0, true
			}
			return 1, true
		}
	}
	return 0, false
}

func compileIn(e *In) (matcher, error) {
	f, err := resolve(e.Field)
	if err != nil {
		return nil, err
	}
	if f.kind == kGroups || f.kind == kTags {
		set := make(map[string]bool, len(e.Values))
		for _, v := range e.Values {
			if v.Kind != ValString {
				return nil, v.at.errorf("%s is %s: IN takes quoted names, not %s", e.Field, kindName(f.kind), describeValue(v))
			}
			set[v.Str] = true
		}
		return func(d *Doc, _ time.Time) bool {
			x, _ := f.get(d)
			for _, s := range x.([]string) {
				if set[s] {
					return true
				}
			}
			return false
		}, nil
	}
	terms := make([]Expr, len(e.Values))
	for i, v := range e.Values {
		terms[i] = &Compare{Field: e.Field, Op: "=", Value: v}
	}
	return compile(&Or{Terms: terms})
}

func compileLike(e *Like) (matcher, error) {
	f, err := resolve(e.Field)
	if err != nil {
		return nil, err
	}
	switch f.kind {
	case kConnected, kEnabled, kLastSeen:
		return nil, e.Field.at.errorf("LIKE matches text; %s is %s", e.Field, kindName(f.kind))
	}
	match := globMatcher(e.Pattern)
	return func(d *Doc, _ time.Time) bool {
		x, ok := f.get(d)
		if !ok {
			return false
		}
		switch x := x.(type) {
		case string:
			return match(x)
		case []string:
			for _, s := range x {
				if match(s) {
					return true
				}
			}
		}
		return false
	}, nil
}

// globMatcher returns a matcher of pattern: * is any run of characters,
// ? exactly one character; everything else stands for itself.
func globMatcher(pattern string) func(string) bool {
	if !strings.ContainsAny(pattern, "*?") {
		return func(s string) bool { return s == pattern }
	}
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok && !strings.ContainsAny(prefix, "*?") {
		return func(s string) bool { return strings.HasPrefix(s, prefix) }
	}
	p := []rune(pattern)
	return func(s string) bool { return glob(p, []rune(s)) }
}

// glob matches s against p iteratively (no exponential backtracking: at
// most one star is kept to return to).
func glob(p, s []rune) bool {
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si] && p[pi] != '*'):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func test(op string, c int) bool {
	switch op {
	case "=":
		return c == 0
	case "!=":
		return c != 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case ">":
		return c > 0
	case ">=":
		return c >= 0
	}
	return false
}

func describeValue(v Value) string {
	switch v.Kind {
	case ValString:
		return "text '" + v.Str + "'"
	case ValNumber:
		return "the number " + v.text
	case ValBool:
		return strconv.FormatBool(v.Bool)
	}
	return "now()"
}
