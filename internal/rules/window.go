package rules

import (
	"strconv"
	"strings"
	"time"
)

// Windowed aggregates. A statement with GROUP BY is windowed:
//
//	SELECT avg(temp) AS avgTemp, count(*) AS n, window_end() AS at
//	FROM 'things/+/telemetry' WHERE temp IS NOT NULL
//	GROUP BY thing, TUMBLING(1m) HAVING avg(temp) > 30
//
// Its messages are not turned into outputs one by one: each one that
// passes WHERE is added to the open window of its group (the values of the
// GROUP BY keys: thing, thing(), topic(N) or clientid()), and a window
// gives one output when it closes (Windows, windows_state.go). Windows are
// aligned to the Unix epoch and timed by the server's receive time. A
// TUMBLING(L) window closes every L; a SLIDING(L, H) window of length L
// closes every hop H, over the last L/H hops. The state of a group is one
// accumulator per aggregate per hop, however many messages arrive.

// Limits on a window spec.
const (
	MinWindowHop     = time.Second    // shortest hop (and tumbling length)
	MaxWindowLength  = 24 * time.Hour // longest window
	MaxWindowBuckets = 100            // most hops in one sliding window (length / hop)
)

// aggregates are the aggregate functions of a windowed statement.
var aggregates = map[string]bool{"avg": true, "min": true, "max": true, "sum": true, "count": true}

// windowFuncs are the functions that give the bounds of the window being
// emitted, in milliseconds since the Unix epoch.
var windowFuncs = map[string]bool{"window_start": true, "window_end": true}

// aggExpr is an aggregate call: avg(x), min(x), max(x), sum(x), count(x)
// or count(*) (arg == nil).
type aggExpr struct {
	pos  position
	name string
	arg  expr
	idx  int // its index among the statement's aggregates
}

// windowFnExpr is window_start() or window_end().
type windowFnExpr struct {
	pos  position
	name string
}

// groupClause is GROUP BY keys..., TUMBLING(length) | SLIDING(length, hop).
type groupClause struct {
	pos     position
	keys    []expr
	winPos  position
	sliding bool
	length  time.Duration
	hop     time.Duration
}

func (e *aggExpr) position() position      { return e.pos }
func (e *windowFnExpr) position() position { return e.pos }
func (e *aggExpr) prec() int               { return precPrimary }
func (e *windowFnExpr) prec() int          { return precPrimary }

func (e *aggExpr) write(b *strings.Builder) {
	b.WriteString(e.name)
	b.WriteByte('(')
	if e.arg == nil {
		b.WriteByte('*')
	} else if isStar(e.arg) {
		b.WriteString("(*)")
	} else {
		e.arg.write(b)
	}
	b.WriteByte(')')
}

func (e *windowFnExpr) write(b *strings.Builder) {
	b.WriteString(e.name)
	b.WriteString("()")
}

func (g *groupClause) write(b *strings.Builder) {
	b.WriteString(" GROUP BY ")
	for _, k := range g.keys {
		k.write(b)
		b.WriteString(", ")
	}
	if g.sliding {
		b.WriteString("SLIDING(")
		b.WriteString(formatDuration(g.length))
		b.WriteString(", ")
		b.WriteString(formatDuration(g.hop))
	} else {
		b.WriteString("TUMBLING(")
		b.WriteString(formatDuration(g.length))
	}
	b.WriteByte(')')
}

// formatDuration writes d in the largest unit that divides it: 1h, 5m,
// 30s, 1500ms.
func formatDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d%time.Millisecond == 0:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
	return d.String()
}

// isDuration reports whether s has the shape of a Go duration with units
// (1h30m, 1.5s, 500ms), whether or not it is in range.
func isDuration(s string) bool {
	for s != "" {
		i := 0
		for i < len(s) && (isDigit(s[i]) || s[i] == '.') {
			i++
		}
		if i == 0 {
			return false
		}
		s = s[i:]
		unit := ""
		for _, u := range [...]string{"ns", "us", "ms", "h", "m", "s"} {
			if strings.HasPrefix(s, u) {
				unit = u
				break
			}
		}
		if unit == "" {
			return false
		}
		s = s[len(unit):]
	}
	return true
}

// isWord reports whether the current token is the bare identifier w (case
// insensitive): GROUP, BY, HAVING, TUMBLING and SLIDING are not reserved,
// so that fields with those names keep working.
func (p *parser) isWord(w string) bool {
	return p.tok.kind == tIdent && strings.EqualFold(p.tok.text, w)
}

func (p *parser) expectWord(w, what string) {
	if !p.isWord(w) {
		p.expected(what)
	}
	p.advance()
}

// windowCall parses an aggregate or a window function.
func (p *parser) windowCall() expr {
	t := p.tok
	name := strings.ToLower(t.text)
	p.advance() // name
	p.advance() // (
	if windowFuncs[name] {
		p.expectOp(")", "')' after "+name+"(: it takes no arguments")
		if p.aggCtx == "WHERE" {
			p.fail(t.pos, "%s() is not allowed in WHERE: a message is not in one window yet", name)
		}
		p.noteWindowed(t.pos)
		return &windowFnExpr{pos: t.pos, name: name}
	}
	switch {
	case p.inAgg:
		p.fail(t.pos, "aggregate %s() inside another aggregate", name)
	case p.aggCtx == "WHERE":
		p.fail(t.pos, "aggregate %s() is not allowed in WHERE: filter messages in WHERE, windows in HAVING", name)
	case p.aggCtx == "":
		p.fail(t.pos, "aggregate %s() is allowed only in SELECT and HAVING", name)
	}
	a := &aggExpr{pos: t.pos, name: name}
	if p.isOp("*") && p.peek().kind == tOp && p.peek().text == ")" {
		if name != "count" {
			p.fail(p.tok.pos, "%s(*) is not allowed: only count(*) counts messages", name)
		}
		p.advance()
	} else {
		if p.isOp(")") {
			p.expected("an argument of " + name + "()")
		}
		p.inAgg = true
		a.arg = p.expr()
		p.inAgg = false
	}
	p.expectOp(")", "')' after the argument of "+name+"(): aggregates take one argument")
	a.idx = len(p.aggs)
	p.aggs = append(p.aggs, a)
	p.noteWindowed(t.pos)
	return a
}

func (p *parser) noteWindowed(pos position) {
	if p.firstWin == nil {
		p.firstWin = &pos
	}
}

// windowClauses parses GROUP BY and HAVING, and checks that aggregates
// appear only in a windowed statement and that a windowed statement reads
// the payload only through aggregates.
func (p *parser) windowClauses(st *statement) {
	if p.isWord("GROUP") {
		g := &groupClause{pos: p.tok.pos}
		p.advance()
		p.expectWord("BY", "BY after GROUP")
		for {
			if p.isWord("TUMBLING") || p.isWord("SLIDING") {
				p.windowSpec(g)
				break
			}
			g.keys = append(g.keys, p.groupKey())
			if !p.isOp(",") {
				p.fail(p.tok.pos, "GROUP BY needs a window: end it with TUMBLING(1m) or SLIDING(5m, 30s), found %s", p.tok.describe())
			}
			p.advance()
		}
		st.group = g
	}
	if p.isWord("HAVING") {
		if st.group == nil {
			p.fail(p.tok.pos, "HAVING needs GROUP BY with a window")
		}
		p.advance()
		p.aggCtx = "HAVING"
		st.having = p.expr()
		p.aggCtx = ""
	}
	st.aggs = p.aggs
	if st.group == nil {
		if p.firstWin != nil {
			p.fail(*p.firstWin, "aggregates and window functions need a window: add GROUP BY thing, TUMBLING(1m) or SLIDING(5m, 30s)")
		}
		if !p.isOp(";") && p.tok.kind != tEOF {
			if st.where != nil {
				p.expected("GROUP BY or end of input")
			}
			p.expected("WHERE, GROUP BY or end of input")
		}
		return
	}
	for _, it := range st.items {
		if it.x == nil {
			p.fail(it.pos, "* is not allowed in a windowed rule: select aggregates such as avg(temp)")
		}
		p.checkWindowed(it.x)
	}
	if st.having != nil {
		p.checkWindowed(st.having)
	}
}

// groupKey parses one GROUP BY key: thing, thing(), topic(N) or clientid().
func (p *parser) groupKey() expr {
	t := p.tok
	if p.isWord("thing") && !(p.peek().kind == tOp && p.peek().text == "(") {
		p.advance()
		return &callExpr{pos: t.pos, name: "thing", def: funcs["thing"]}
	}
	if t.kind == tIdent && p.peek().kind == tOp && p.peek().text == "(" {
		x := p.call()
		if c, ok := x.(*callExpr); ok {
			switch c.name {
			case "thing", "clientid":
				return c
			case "topic":
				if len(c.args) == 1 {
					return c
				}
			}
		}
	}
	p.fail(t.pos, "GROUP BY groups by thing, thing(), topic(N) or clientid(), then a window, found %s", t.describe())
	return nil
}

// windowSpec parses TUMBLING(length) or SLIDING(length, hop) and checks it.
func (p *parser) windowSpec(g *groupClause) {
	g.winPos = p.tok.pos
	g.sliding = p.isWord("SLIDING")
	name := "TUMBLING"
	if g.sliding {
		name = "SLIDING"
	}
	p.advance()
	p.expectOp("(", "'(' after "+name)
	lenPos := p.tok.pos
	g.length = p.duration(name)
	g.hop = g.length
	hopPos := lenPos
	if g.sliding {
		p.expectOp(",", "',' and the hop in SLIDING(length, hop)")
		hopPos = p.tok.pos
		g.hop = p.duration(name)
	}
	p.expectOp(")", "')' after the durations of "+name)
	switch {
	case g.length > MaxWindowLength:
		p.fail(lenPos, "window length %s is longer than %s", formatDuration(g.length), formatDuration(MaxWindowLength))
	case g.hop < MinWindowHop && !g.sliding:
		p.fail(lenPos, "window length %s is shorter than %s", formatDuration(g.length), formatDuration(MinWindowHop))
	case g.hop < MinWindowHop:
		p.fail(hopPos, "hop %s is shorter than %s", formatDuration(g.hop), formatDuration(MinWindowHop))
	case g.hop > g.length:
		p.fail(hopPos, "hop %s is longer than the window length %s", formatDuration(g.hop), formatDuration(g.length))
	case g.length%g.hop != 0:
		p.fail(hopPos, "hop %s does not divide the window length %s", formatDuration(g.hop), formatDuration(g.length))
	case g.length/g.hop > MaxWindowBuckets:
		p.fail(hopPos, "a window of %s has %d hops of %s; the limit is %d", formatDuration(g.length), g.length/g.hop,
			formatDuration(g.hop), MaxWindowBuckets)
	}
}

// duration parses a duration token: 30s, 5m, 1h, 1h30m, 500ms.
func (p *parser) duration(in string) time.Duration {
	t := p.tok
	if t.kind == tOp && t.text == "-" {
		p.fail(t.pos, "a window duration must be positive")
	}
	if t.kind == tNumber {
		p.fail(t.pos, "duration %s needs a unit, as in %ss or %sm", quoteSnippet(t.text), quoteSnippet(t.text), quoteSnippet(t.text))
	}
	if t.kind != tDuration {
		p.expected("a duration such as 30s, 5m or 1h in " + in + "()")
	}
	d, err := time.ParseDuration(t.text)
	if err != nil {
		p.fail(t.pos, "duration %s is out of range or malformed", quoteSnippet(t.text))
	}
	if d <= 0 {
		p.fail(t.pos, "a window duration must be positive, found %s", quoteSnippet(t.text))
	}
	p.advance()
	return d
}

// checkWindowed checks an expression of a windowed statement's SELECT or
// HAVING: outside aggregates it may not read the payload (which message's
// would it be?).
func (p *parser) checkWindowed(x expr) {
	walkExpr(x, func(e expr) bool {
		switch e := e.(type) {
		case *aggExpr:
			return false // its argument reads the messages
		case *pathExpr:
			if e.base == nil {
				p.fail(e.pos, "field %s must be inside an aggregate such as avg(%s) in a windowed rule",
					quoteSnippet(e.steps[0].key), quoteSnippet(e.steps[0].key))
			}
		case *starExpr:
			p.fail(e.pos, "* must be inside count() in a windowed rule")
		case *callExpr:
			if e.name == "payload" {
				p.fail(e.pos, "payload() must be inside an aggregate in a windowed rule")
			}
		}
		return true
	})
}

// walkExpr calls f on x and, while f returns true, on its subexpressions.
func walkExpr(x expr, f func(expr) bool) {
	if x == nil || !f(x) {
		return
	}
	switch e := x.(type) {
	case *pathExpr:
		walkExpr(e.base, f)
		for _, s := range e.steps {
			walkExpr(s.index, f)
		}
	case *unaryExpr:
		walkExpr(e.x, f)
	case *binaryExpr:
		walkExpr(e.l, f)
		walkExpr(e.r, f)
	case *isNullExpr:
		walkExpr(e.x, f)
	case *inExpr:
		walkExpr(e.x, f)
		for _, y := range e.list {
			walkExpr(y, f)
		}
	case *betweenExpr:
		walkExpr(e.x, f)
		walkExpr(e.lo, f)
		walkExpr(e.hi, f)
	case *caseExpr:
		walkExpr(e.operand, f)
		for _, w := range e.whens {
			walkExpr(w.cond, f)
			walkExpr(w.result, f)
		}
		walkExpr(e.els, f)
	case *callExpr:
		for _, a := range e.args {
			walkExpr(a, f)
		}
	case *castExpr:
		walkExpr(e.x, f)
	case *aggExpr:
		walkExpr(e.arg, f)
	}
}
