package fleetquery

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// Limits bound what Parse accepts.
type Limits struct {
	MaxLength int // bytes of query text; 0: DefaultMaxLength
	MaxDepth  int // nesting of parentheses and NOT; 0: DefaultMaxDepth
}

// Defaults of Limits.
const (
	DefaultMaxLength = 4096
	DefaultMaxDepth  = 32
)

// Query is a parsed and checked query, safe for concurrent use.
type Query struct {
	Root  Expr
	src   string
	match matcher
}

// String returns the query in canonical form: parsing it again gives the
// same query.
func (q *Query) String() string {
	var b strings.Builder
	q.Root.appendTo(&b)
	return b.String()
}

// Source returns the text the query was parsed from.
func (q *Query) Source() string { return q.src }

// Parse parses and checks a query. Errors are *Error with the line and
// column of the problem.
func Parse(src string, lim Limits) (*Query, error) {
	if lim.MaxLength <= 0 {
		lim.MaxLength = DefaultMaxLength
	}
	if lim.MaxDepth <= 0 {
		lim.MaxDepth = DefaultMaxDepth
	}
	if len(src) > lim.MaxLength {
		return nil, &Error{Line: 1, Col: 1, Msg: "query is " + strconv.Itoa(len(src)) + " bytes, more than the limit of " + strconv.Itoa(lim.MaxLength)}
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, maxDepth: lim.MaxDepth}
	if p.peek().kind == tEOF {
		return nil, p.peek().pos.errorf("empty query")
	}
	root, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, t.pos.errorf("unexpected %s: expected AND, OR or the end of the query", t.describe())
	}
	m, err := compile(root)
	if err != nil {
		return nil, err
	}
	return &Query{Root: root, src: src, match: m}, nil
}

type parser struct {
	toks     []token
	i        int
	maxDepth int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

// keyword reports whether the next token is the keyword kw (any case)
// and consumes it if so.
func (p *parser) keyword(kw string) bool {
	t := p.peek()
	if t.kind == tIdent && strings.EqualFold(t.text, kw) {
		p.i++
		return true
	}
	return false
}

func (p *parser) isKeyword(kw string) bool {
	t := p.peek()
	return t.kind == tIdent && strings.EqualFold(t.text, kw)
}

func (p *parser) or(depth int) (Expr, error) {
	first, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	terms := []Expr{first}
	for p.keyword("or") {
		e, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		terms = append(terms, e)
	}
	if len(terms) == 1 {
		return first, nil
	}
	return &Or{Terms: terms}, nil
}

func (p *parser) and(depth int) (Expr, error) {
	first, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	terms := []Expr{first}
	for p.keyword("and") {
		e, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		terms = append(terms, e)
	}
	if len(terms) == 1 {
		return first, nil
	}
	return &And{Terms: terms}, nil
}

func (p *parser) unary(depth int) (Expr, error) {
	t := p.peek()
	if depth >= p.maxDepth {
		return nil, t.pos.errorf("query nested deeper than %d levels", p.maxDepth)
	}
	if p.keyword("not") {
		x, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &Not{X: x}, nil
	}
	if t.kind == tLParen {
		p.next()
		e, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tRParen {
			return nil, c.pos.errorf("expected ')' to close the '(' at %d:%d, found %s", t.pos.line, t.pos.col, c.describe())
		}
		return e, nil
	}
	if p.keyword("exists") {
		f, err := p.field()
		if err != nil {
			return nil, err
		}
		return &Exists{Field: f}, nil
	}
	return p.predicate()
}

// predicate: operand (op value | [NOT] IN (values) | [NOT] LIKE 'pattern').
func (p *parser) predicate() (Expr, error) {
	version := false
	t := p.peek()
	if t.kind == tIdent && strings.EqualFold(t.text, "version") && p.toks[p.i+1].kind == tLParen {
		p.i += 2
		version = true
	}
	f, err := p.field()
	if err != nil {
		return nil, err
	}
	if version {
		if c := p.next(); c.kind != tRParen {
			return nil, c.pos.errorf("expected ')' after the field of version(, found %s", c.describe())
		}
	}
	op := p.peek()
	negate := false
	if !version && p.isKeyword("not") {
		p.next()
		negate = true
		if !p.isKeyword("in") && !p.isKeyword("like") {
			return nil, p.peek().pos.errorf("expected IN or LIKE after NOT, found %s", p.peek().describe())
		}
	}
	var e Expr
	switch {
	case op.kind == tOp:
		p.next()
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		e = &Compare{Field: f, Version: version, Op: op.text, Value: v}
	case !version && p.keyword("in"):
		if c := p.next(); c.kind != tLParen {
			return nil, c.pos.errorf("expected '(' after IN, found %s", c.describe())
		}
		in := &In{Field: f}
		for {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			in.Values = append(in.Values, v)
			c := p.next()
			if c.kind == tRParen {
				break
			}
			if c.kind != tComma {
				return nil, c.pos.errorf("expected ',' or ')' in the IN list, found %s", c.describe())
			}
		}
		e = in
	case !version && p.keyword("like"):
		v := p.next()
		if v.kind != tString {
			return nil, v.pos.errorf("LIKE takes a quoted pattern such as 'sensor-*', found %s", v.describe())
		}
		e = &Like{Field: f, Pattern: v.text}
	default:
		return nil, op.pos.errorf("expected an operator (= != < <= > >=, IN, LIKE) after %s, found %s", f, op.describe())
	}
	if negate {
		e = &Not{X: e}
	}
	return e, nil
}

// field: segment {'.' segment}; a segment is an identifier or "quoted".
func (p *parser) field() (Field, error) {
	t := p.next()
	if t.kind != tIdent && t.kind != tQuotedIdent {
		return Field{}, t.pos.errorf("expected a field such as name, attributes.site or shadow.reported.firmware, found %s", t.describe())
	}
	if t.kind == tIdent && isKeyword(t.text) {
		return Field{}, t.pos.errorf("expected a field, found the keyword %s", strings.ToUpper(t.text))
	}
	f := Field{Path: []string{t.text}, at: t.pos}
	for p.peek().kind == tDot {
		p.next()
		s := p.next()
		switch s.kind {
		case tIdent, tQuotedIdent, tNumber:
			f.Path = append(f.Path, s.text)
		default:
			return Field{}, s.pos.errorf("expected a name after '.', found %s", s.describe())
		}
	}
	return f, nil
}

// value: 'string' | [-]number | true | false | now() [(+|-) duration].
func (p *parser) value() (Value, error) {
	t := p.next()
	switch t.kind {
	case tString:
		return Value{Kind: ValString, Str: t.text, at: t.pos}, nil
	case tMinus, tNumber:
		text := t.text
		if t.kind == tMinus {
			n := p.next()
			if n.kind != tNumber {
				return Value{}, n.pos.errorf("expected a number after '-', found %s", n.describe())
			}
			text = "-" + n.text
		}
		f, err := strconv.ParseFloat(text, 64)
		if err != nil || math.IsInf(f, 0) {
			return Value{}, t.pos.errorf("bad number %s", text)
		}
		return Value{Kind: ValNumber, Num: f, text: text, at: t.pos}, nil
	case tIdent:
		switch strings.ToLower(t.text) {
		case "true", "false":
			return Value{Kind: ValBool, Bool: strings.EqualFold(t.text, "true"), at: t.pos}, nil
		case "now":
			if a, b := p.next(), p.next(); a.kind != tLParen || b.kind != tRParen {
				return Value{}, t.pos.errorf("expected now()")
			}
			v := Value{Kind: ValNow, at: t.pos}
			if s := p.peek(); s.kind == tPlus || s.kind == tMinus {
				p.next()
				d := p.next()
				if d.kind != tDuration {
					return Value{}, d.pos.errorf("expected a duration such as 30s, 15m, 1h or 7d after %q, found %s", s.text, d.describe())
				}
				off, err := parseDuration(d.text)
				if err != nil {
					return Value{}, d.pos.errorf("%v", err)
				}
				if s.kind == tMinus {
					off = -off
				}
				v.Offset, v.text = off, s.text+" "+d.text
			}
			return v, nil
		}
	case tDuration:
		return Value{}, t.pos.errorf("a duration such as %s is only valid after now() + or -", t.text)
	}
	return Value{}, t.pos.errorf("expected a value ('text', a number, true, false or now()), found %s", t.describe())
}

// parseDuration is time.ParseDuration with days (d) and weeks (w) as
// whole units too: 7d, 2w.
func parseDuration(s string) (time.Duration, error) {
	for _, u := range []struct {
		suffix string
		d      time.Duration
	}{{"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseUint(n, 10, 32)
			if err != nil || v > 100*52 {
				return 0, errors.New("bad duration " + s)
			}
			return time.Duration(v) * u.d, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("bad duration " + s + ": use a number and a unit s, m, h, d or w")
	}
	return d, nil
}
