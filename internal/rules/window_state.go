package rules

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// windowPlan is the compiled window of a statement.
type windowPlan struct {
	spec   Window
	hopMs  int64
	n      int64 // hops per window (1 for tumbling)
	keys   []evalFn
	args   []aggArg
	having evalFn // nil: no HAVING
}

type aggArg struct {
	kind byte   // 'a'vg, 'm'in, 'M'ax, 's'um, 'c'ount
	fn   evalFn // nil: count(*)
}

var aggKinds = map[string]byte{"avg": 'a', "min": 'm', "max": 'M', "sum": 's', "count": 'c'}

func compileWindow(ast *statement) *windowPlan {
	g := ast.group
	w := &windowPlan{
		spec:  Window{Length: g.length, Hop: g.hop, Sliding: g.sliding},
		hopMs: g.hop.Milliseconds(),
		n:     int64(g.length / g.hop),
	}
	for _, k := range g.keys {
		w.keys = append(w.keys, compile(k))
	}
	for _, a := range ast.aggs {
		arg := aggArg{kind: aggKinds[a.name]}
		if a.arg != nil {
			arg.fn = compile(a.arg)
		}
		w.args = append(w.args, arg)
	}
	if ast.having != nil {
		w.having = compile(ast.having)
	}
	return w
}

// Window is the window of a windowed statement: TUMBLING(Length) (Hop ==
// Length) or SLIDING(Length, Hop).
type Window struct {
	Length  time.Duration
	Hop     time.Duration
	Sliding bool
}

// Window returns the statement's window, or ok == false when it is not
// windowed.
func (s *Statement) Window() (w Window, ok bool) {
	if s.win == nil {
		return Window{}, false
	}
	return s.win.spec, true
}

// Errors of Windows.Add.
var (
	// ErrWindowLate: the message's time falls in windows already emitted.
	ErrWindowLate = errors.New("rules: message is later than its window")
	// ErrWindowGroups: the message would open a new group beyond the limit.
	ErrWindowGroups = errors.New("rules: too many open window groups")
)

// WindowRow is the output of one closed window of one group.
type WindowRow struct {
	Group      string    // the GROUP BY key values, joined by "/"
	Start, End time.Time // the window is [Start, End)
	// Input is the last message of the group (topic, thing, client ID),
	// received at End: what actions see as the message.
	Input  Input
	Output Object
	Err    error // an *EvalError of the projection (a failed CAST); Output is nil
}

// acc accumulates the numbers of one aggregate in one hop.
type acc struct {
	n          int64 // values (count: non-null values)
	sum        float64
	isum       int64
	min, max   float64
	imin, imax int64
	floats     bool // some value was a float (or the int sum overflowed)
}

func (a *acc) add(v Value) {
	if v.kind == KindInt {
		i := v.Int()
		if a.n == 0 || i < a.imin {
			a.imin = i
		}
		if a.n == 0 || i > a.imax {
			a.imax = i
		}
		s := a.isum + i
		if (s > a.isum) != (i > 0) && i != 0 {
			a.floats = true // int overflow: the sum is a float
		}
		a.isum = s
	} else {
		a.floats = true
	}
	f := v.Float()
	if a.n == 0 || f < a.min {
		a.min = f
	}
	if a.n == 0 || f > a.max {
		a.max = f
	}
	a.sum += f
	a.n++
}

func (a *acc) merge(b *acc) {
	if b.n == 0 {
		return
	}
	if a.n == 0 {
		*a = *b
		return
	}
	a.imin, a.imax = min(a.imin, b.imin), max(a.imax, b.imax)
	a.min, a.max = min(a.min, b.min), max(a.max, b.max)
	s := a.isum + b.isum
	if (s > a.isum) != (b.isum > 0) && b.isum != 0 {
		a.floats = true
	}
	a.isum = s
	a.sum += b.sum
	a.n += b.n
	a.floats = a.floats || b.floats
}

func (a *acc) value(kind byte) Value {
	if kind == 'c' {
		return intValue(a.n)
	}
	if a.n == 0 {
		return null
	}
	switch kind {
	case 'a':
		if !a.floats {
			return floatValue(float64(a.isum) / float64(a.n))
		}
		return floatValue(a.sum / float64(a.n))
	case 'm':
		if !a.floats {
			return intValue(a.imin)
		}
		return floatValue(a.min)
	case 'M':
		if !a.floats {
			return intValue(a.imax)
		}
		return floatValue(a.max)
	}
	if !a.floats {
		return intValue(a.isum)
	}
	return floatValue(a.sum)
}

// group is the open windows of one group: a ring of n+1 hops (one more
// than a window has, so that the window that just ended stays open for
// messages still on their way while the next one fills).
type group struct {
	in   Input   // the last message's topic, thing and client ID
	next int64   // the first window not yet emitted (windows are numbered by their last hop)
	last int64   // the latest hop with messages
	tags []int64 // per slot: the hop it holds
	msgs []int64 // per slot: messages
	accs []acc   // per slot, per aggregate
}

// Windows holds the open windows of a windowed statement, per group. It is
// not safe for concurrent use.
type Windows struct {
	s         *Statement
	w         *windowPlan
	maxGroups int
	groups    map[string]*group
	scratch   []acc
	closed    int64 // windows numbered below it have been emitted for every group
	vals      []Value
	full      bool    // refuse new groups (SetFull)
	ks        []int64 // advance's scratch
}

// NewWindows returns the window state of s, a windowed statement, holding
// at most maxGroups groups (<= 0: no limit). It panics when s is not
// windowed.
func (s *Statement) NewWindows(maxGroups int) *Windows {
	if s.win == nil {
		panic("rules: NewWindows of a statement without a window")
	}
	return &Windows{s: s, w: s.win, maxGroups: maxGroups, groups: map[string]*group{},
		scratch: make([]acc, len(s.win.args)), closed: math.MinInt64, vals: make([]Value, len(s.win.args))}
}

// Len returns the number of open groups.
func (ws *Windows) Len() int { return len(ws.groups) }

// floorDiv is a / b rounded down.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Add adds a message received at the time at to the window of its group,
// when it passes WHERE. It returns the rows of windows that had to close
// first (a group's ring is full: its oldest hop's windows are emitted) and
// the number of values aggregates skipped because they were not numbers.
// err is an *EvalError (WHERE or an aggregate argument failed),
// ErrWindowLate or ErrWindowGroups.
func (ws *Windows) Add(m *Message, at time.Time) (rows []WindowRow, skipped int, err error) {
	w := ws.w
	m.err = nil
	if ws.s.where != nil {
		v := ws.s.where(m)
		if m.err != nil {
			return nil, 0, m.err
		}
		if !isTrue(v) {
			return nil, 0, nil
		}
	}
	var key string
	if len(w.keys) == 1 {
		key = keyString(w.keys[0](m))
	} else if len(w.keys) > 1 {
		var b strings.Builder
		for i, k := range w.keys {
			if i > 0 {
				b.WriteByte('/')
			}
			b.WriteString(keyString(k(m)))
		}
		key = b.String()
	}
	// Evaluate the arguments before touching the state, so that an
	// evaluation error leaves it as it was.
	vals := ws.vals
	for i, a := range w.args {
		if a.fn != nil {
			vals[i] = a.fn(m)
		}
	}
	if m.err != nil {
		return nil, 0, m.err
	}
	hop := floorDiv(at.UnixMilli(), w.hopMs)
	g := ws.groups[key]
	if g == nil {
		if hop+w.n-1 < ws.closed {
			return nil, 0, ErrWindowLate
		}
		if ws.full || ws.maxGroups > 0 && len(ws.groups) >= ws.maxGroups {
			return nil, 0, ErrWindowGroups
		}
		r := w.n + 1
		g = &group{next: max(hop, ws.closed), last: hop, tags: make([]int64, r), msgs: make([]int64, r),
			accs: make([]acc, r*int64(len(w.args)))}
		for i := range g.tags {
			g.tags[i] = math.MinInt64
		}
		ws.groups[key] = g
	}
	if hop+w.n-1 < g.next {
		return nil, 0, ErrWindowLate
	}
	r := w.n + 1
	slot := hop % r
	if slot < 0 {
		slot += r
	}
	if t := g.tags[slot]; t != hop {
		if t > hop {
			return nil, 0, ErrWindowLate // its slot holds a later hop already
		}
		if t != math.MinInt64 && t+w.n-1 >= g.next {
			rows = ws.advance(key, g, t+w.n, rows) // emit the windows that hold hop t
		}
		g.tags[slot], g.msgs[slot] = hop, 0
		clear(g.accs[slot*int64(len(w.args)) : (slot+1)*int64(len(w.args))])
	}
	g.msgs[slot]++
	accs := g.accs[slot*int64(len(w.args)):]
	for i, a := range w.args {
		v := vals[i]
		switch {
		case a.fn == nil:
			accs[i].n++
		case v.isUnknown():
		case a.kind == 'c':
			accs[i].n++
		case v.isNumber():
			accs[i].add(v)
		default:
			skipped++
		}
	}
	g.last = max(g.last, hop)
	g.in = Input{Topic: m.in.Topic, Thing: m.in.Thing, ClientID: m.in.ClientID}
	return rows, skipped, nil
}

func keyString(v Value) string {
	if v.isUnknown() {
		return ""
	}
	if v.kind == KindString {
		return v.str
	}
	return v.String()
}

// Close emits the windows that ended at or before now, in order of group
// then time, and forgets the groups that have no open window left.
func (ws *Windows) Close(now time.Time) []WindowRow {
	upTo := floorDiv(now.UnixMilli(), ws.w.hopMs) // windows before it ended by now
	ws.closed = max(ws.closed, upTo)
	var rows []WindowRow
	for key, g := range ws.groups {
		rows = ws.advance(key, g, upTo, rows)
		if g.last+ws.w.n-1 < g.next {
			delete(ws.groups, key)
		}
	}
	return rows
}

// advance emits g's windows numbered next up to (not including) upTo that
// hold messages: only windows that hold one of the ring's hops are looked
// at, however long the group was idle.
func (ws *Windows) advance(key string, g *group, upTo int64, rows []WindowRow) []WindowRow {
	w := ws.w
	ks := ws.ks[:0]
	for slot, h := range g.tags {
		if h == math.MinInt64 || g.msgs[slot] == 0 {
			continue
		}
		for k := max(h, g.next); k < h+w.n && k < upTo; k++ {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	ks = slices.Compact(ks)
	for _, k := range ks {
		if row, ok := ws.emit(key, g, k); ok {
			rows = append(rows, row)
		}
	}
	ws.ks = ks
	g.next = max(g.next, upTo)
	return rows
}

// emit computes window k (hops k-n+1 to k) of g.
func (ws *Windows) emit(key string, g *group, k int64) (WindowRow, bool) {
	w := ws.w
	r := w.n + 1
	na := int64(len(w.args))
	merged := ws.scratch
	clear(merged)
	var msgs int64
	for h := k - w.n + 1; h <= k; h++ {
		slot := h % r
		if slot < 0 {
			slot += r
		}
		if g.tags[slot] != h || g.msgs[slot] == 0 {
			continue
		}
		msgs += g.msgs[slot]
		for i := range merged {
			merged[i].merge(&g.accs[slot*na+int64(i)])
		}
	}
	if msgs == 0 {
		return WindowRow{}, false // empty windows emit nothing
	}
	startMs, endMs := (k-w.n+1)*w.hopMs, (k+1)*w.hopMs
	in := g.in
	in.Received = time.UnixMilli(endMs)
	m := &Message{in: in, decoded: true, root: undefined, winStart: startMs, winEnd: endMs,
		aggs: make([]Value, len(w.args))}
	for i, a := range w.args {
		m.aggs[i] = merged[i].value(a.kind)
	}
	row := WindowRow{Group: key, Start: time.UnixMilli(startMs), End: time.UnixMilli(endMs), Input: in}
	if w.having != nil {
		v := w.having(m)
		if m.err != nil {
			row.Err = m.err
			return row, true
		}
		if !isTrue(v) {
			return WindowRow{}, false
		}
	}
	out := make(Object, 0, len(ws.s.items))
	for _, it := range ws.s.items {
		if v := it.fn(m); v.kind != KindUndefined {
			out = append(out, Member{Key: it.name, Value: v})
		}
	}
	if m.err != nil {
		row.Err = m.err
		return row, true
	}
	row.Output = out
	return row, true
}

// SetFull makes Add refuse new groups (full) or take them again up to
// the limit NewWindows was given: a caller that limits the groups of
// several Windows together says when the total is reached.
func (ws *Windows) SetFull(full bool) { ws.full = full }

// Statement returns the statement of the windows.
func (ws *Windows) Statement() *Statement { return ws.s }

// The saved form of Windows (gob: sums may be infinite, which JSON cannot
// carry).
type savedWindows struct {
	Version int
	Length  time.Duration
	Hop     time.Duration
	Aggs    int
	Closed  int64
	Groups  []savedGroup
}

type savedGroup struct {
	Key, Topic, Thing, ClientID string
	Next, Last                  int64
	Tags, Msgs                  []int64
	Accs                        []savedAcc
}

type savedAcc struct {
	N, ISum, IMin, IMax int64
	Sum, Min, Max       float64
	Floats              bool
}

// Save encodes the open windows, for Restore after a restart.
func (ws *Windows) Save() ([]byte, error) {
	sw := savedWindows{Version: 1, Length: ws.w.spec.Length, Hop: ws.w.spec.Hop, Aggs: len(ws.w.args), Closed: ws.closed,
		Groups: make([]savedGroup, 0, len(ws.groups))}
	for key, g := range ws.groups {
		sg := savedGroup{Key: key, Topic: g.in.Topic, Thing: g.in.Thing, ClientID: g.in.ClientID, Next: g.next, Last: g.last,
			Tags: g.tags, Msgs: g.msgs, Accs: make([]savedAcc, len(g.accs))}
		for i, a := range g.accs {
			sg.Accs[i] = savedAcc{N: a.n, ISum: a.isum, IMin: a.imin, IMax: a.imax, Sum: a.sum, Min: a.min, Max: a.max, Floats: a.floats}
		}
		sw.Groups = append(sw.Groups, sg)
	}
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(&sw); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Restore adds the groups saved by Save of the same statement, at most
// maxGroups of them (<= 0: all), and returns how many it added. A state
// that does not decode or does not fit the statement's window is an
// error and restores nothing.
func (ws *Windows) Restore(data []byte, maxGroups int) (int, error) {
	var sw savedWindows
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&sw); err != nil {
		return 0, fmt.Errorf("rules: saved windows do not decode: %w", err)
	}
	w := ws.w
	r := w.n + 1
	if sw.Version != 1 || sw.Length != w.spec.Length || sw.Hop != w.spec.Hop || sw.Aggs != len(w.args) {
		return 0, errors.New("rules: saved windows are of another window or statement")
	}
	const far = 1 << 50 // hops: beyond any real time
	sane := func(h int64) bool { return h > -far && h < far }
	for _, sg := range sw.Groups {
		if int64(len(sg.Tags)) != r || int64(len(sg.Msgs)) != r || int64(len(sg.Accs)) != r*int64(len(w.args)) ||
			!sane(sg.Next) || !sane(sg.Last) {
			return 0, errors.New("rules: saved windows are corrupt")
		}
		for i, h := range sg.Tags {
			if h != math.MinInt64 && !sane(h) || sg.Msgs[i] < 0 {
				return 0, errors.New("rules: saved windows are corrupt")
			}
		}
	}
	if !sane(sw.Closed) && sw.Closed != math.MinInt64 {
		return 0, errors.New("rules: saved windows are corrupt")
	}
	n := 0
	for _, sg := range sw.Groups {
		if _, dup := ws.groups[sg.Key]; dup || maxGroups > 0 && n >= maxGroups {
			continue
		}
		g := &group{in: Input{Topic: sg.Topic, Thing: sg.Thing, ClientID: sg.ClientID}, next: sg.Next, last: sg.Last,
			tags: sg.Tags, msgs: sg.Msgs, accs: make([]acc, len(sg.Accs))}
		for i, a := range sg.Accs {
			g.accs[i] = acc{n: a.N, isum: a.ISum, imin: a.IMin, imax: a.IMax, sum: a.Sum, min: a.Min, max: a.Max, floats: a.Floats}
		}
		ws.groups[sg.Key] = g
		n++
	}
	ws.closed = max(ws.closed, sw.Closed)
	return n, nil
}
