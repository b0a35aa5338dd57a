package rules

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// parser is a recursive-descent parser over the lexer's tokens. It reports
// the first error by panicking with a *ParseError, which parse recovers.
type parser struct {
	lx      lexer
	tok     token  // current token
	ahead   *token // one token of lookahead, when peeked
	depth   int
	nextIdx int // 1-based index of the select item being parsed

	// Windowed aggregates (window.go).
	aggCtx   string     // where aggregates may appear ("" anywhere they may not: the clause name)
	inAgg    bool       // inside an aggregate's argument
	aggs     []*aggExpr // the aggregates met, in order
	firstWin *position  // the first aggregate or window function met
}

// parse parses a statement into its AST.
func parse(sql string) (st *statement, err error) {
	if len(sql) > MaxSQLBytes {
		return nil, &ParseError{Line: 1, Pos: 1, Msg: fmt.Sprintf("statement is %d bytes long; the limit is %d", len(sql), MaxSQLBytes)}
	}
	if !utf8.ValidString(sql) {
		l := lexer{src: sql, line: 1}
		for i := 0; i < len(sql); {
			r, size := utf8.DecodeRuneInString(sql[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, l.errorf(l.posAt(i), "invalid UTF-8")
			}
			if r == '\n' {
				l.line++
				l.lineStart = i + 1
			}
			i += size
		}
	}
	p := &parser{lx: lexer{src: sql, line: 1}}
	defer func() {
		if r := recover(); r != nil {
			perr, ok := r.(*ParseError)
			if !ok {
				panic(r)
			}
			st, err = nil, perr
		}
	}()
	p.advance()
	return p.statement(), nil
}

func (p *parser) fail(pos position, format string, args ...any) {
	panic(p.lx.errorf(pos, format, args...))
}

// advance moves to the next token.
func (p *parser) advance() {
	if p.ahead != nil {
		p.tok, p.ahead = *p.ahead, nil
		return
	}
	t, err := p.lx.next()
	if err != nil {
		panic(err)
	}
	p.tok = t
}

// peek returns the token after the current one.
func (p *parser) peek() token {
	if p.ahead == nil {
		t, err := p.lx.next()
		if err != nil {
			panic(err)
		}
		p.ahead = &t
	}
	return *p.ahead
}

func (p *parser) isKeyword(kw string) bool { return p.tok.kind == tKeyword && p.tok.text == kw }

func (p *parser) isOp(op string) bool { return p.tok.kind == tOp && p.tok.text == op }

func (p *parser) expected(what string) {
	p.fail(p.tok.pos, "expected %s, found %s", what, p.tok.describe())
}

func (p *parser) expectKeyword(kw, what string) {
	if !p.isKeyword(kw) {
		p.expected(what)
	}
	p.advance()
}

func (p *parser) expectOp(op, what string) {
	if !p.isOp(op) {
		p.expected(what)
	}
	p.advance()
}

func (p *parser) statement() *statement {
	st := &statement{}
	p.expectKeyword("SELECT", "SELECT")
	names := map[string]bool{}
	star := false
	for {
		p.nextIdx = len(st.items) + 1
		p.aggCtx = "SELECT"
		it := p.selectItem()
		p.aggCtx = ""
		if it.x == nil {
			if star {
				p.fail(it.pos, "* may appear only once in SELECT")
			}
			star = true
		} else {
			if names[it.name] {
				p.fail(it.pos, "duplicate output name %s (rename with AS)", quoteSnippet(quoteName(it.name)))
			}
			names[it.name] = true
		}
		st.items = append(st.items, it)
		if !p.isOp(",") {
			break
		}
		p.advance()
	}
	p.expectKeyword("FROM", "FROM")
	if p.tok.kind != tString {
		p.expected("a topic filter in single quotes after FROM")
	}
	st.from, st.fromPos = p.tok.text, p.tok.pos
	if problem := filterProblem(st.from); problem != "" {
		p.fail(st.fromPos, "invalid topic filter %s: %s", quoteSnippet(p.tok.src), problem)
	}
	p.advance()
	if p.isKeyword("WHERE") {
		p.advance()
		p.aggCtx = "WHERE"
		st.where = p.expr()
		p.aggCtx = ""
	} else if !p.isOp(";") && p.tok.kind != tEOF && !p.isWord("GROUP") && !p.isWord("HAVING") {
		p.expected("WHERE, GROUP BY or end of input")
	}
	p.windowClauses(st)
	if p.isOp(";") {
		p.advance()
	}
	if p.tok.kind != tEOF {
		p.expected("end of input")
	}
	return st
}

func quoteName(s string) string {
	var b strings.Builder
	writeQuoted(&b, s, '\'')
	return b.String()
}

// filterProblem says what is wrong with a rule's topic filter, or "".
func filterProblem(f string) string {
	switch {
	case f == "":
		return "it is empty"
	case len(f) > 65535:
		return "it is longer than 65535 bytes"
	case strings.IndexByte(f, 0) >= 0:
		return "it contains a NUL character"
	case strings.HasPrefix(f, "$share/"):
		return "a rule cannot use a shared subscription"
	}
	for rest := f; ; {
		level, after, more := strings.Cut(rest, "/")
		switch {
		case level == "#" && more:
			return "'#' must be the last level"
		case level != "#" && strings.Contains(level, "#"), level != "+" && strings.Contains(level, "+"):
			return "a wildcard must be a whole level"
		}
		if !more {
			return ""
		}
		rest = after
	}
}

func (p *parser) selectItem() selectItem {
	it := selectItem{pos: p.tok.pos}
	if p.isOp("*") {
		if next := p.peek(); next.kind == tEOF || next.kind == tOp && next.text == "," ||
			next.kind == tKeyword && next.text == "FROM" {
			p.advance()
			it.name = "*"
			return it
		}
	}
	it.x = p.expr()
	if p.isKeyword("AS") {
		p.advance()
		if p.tok.kind != tIdent && p.tok.kind != tQIdent {
			p.expected("a name after AS")
		}
		it.alias, it.as, it.name = p.tok.text, true, p.tok.text
		p.advance()
		return it
	}
	it.name = "_" + strconv.Itoa(p.nextIdx)
	if pe, ok := it.x.(*pathExpr); ok {
		if last := pe.steps[len(pe.steps)-1]; last.index == nil {
			it.name = last.key
		}
	}
	return it
}

// expr parses a whole expression, one level deeper.
func (p *parser) expr() expr {
	p.enter()
	x := p.or()
	p.depth--
	return x
}

func (p *parser) enter() {
	if p.depth++; p.depth > MaxDepth {
		p.fail(p.tok.pos, "expression nested too deeply (the limit is %d levels)", MaxDepth)
	}
}

func (p *parser) or() expr {
	x := p.and()
	for p.isKeyword("OR") {
		pos := p.tok.pos
		p.advance()
		x = &binaryExpr{pos: pos, op: "OR", l: x, r: p.and()}
	}
	return x
}

func (p *parser) and() expr {
	x := p.not()
	for p.isKeyword("AND") {
		pos := p.tok.pos
		p.advance()
		x = &binaryExpr{pos: pos, op: "AND", l: x, r: p.not()}
	}
	return x
}

func (p *parser) not() expr {
	if !p.isKeyword("NOT") {
		return p.comparison()
	}
	pos := p.tok.pos
	p.advance()
	p.enter()
	x := p.not()
	p.depth--
	return &unaryExpr{pos: pos, op: "NOT", x: x}
}

var comparisonOps = map[string]string{"=": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}

func (p *parser) comparison() expr {
	x := p.additive()
	for {
		pos := p.tok.pos
		switch {
		case p.tok.kind == tOp && comparisonOps[p.tok.text] != "":
			op := comparisonOps[p.tok.text]
			p.advance()
			x = &binaryExpr{pos: pos, op: op, l: x, r: p.additive()}
		case p.isKeyword("IS"):
			p.advance()
			not := p.isKeyword("NOT")
			if not {
				p.advance()
			}
			if !p.isKeyword("NULL") {
				if not {
					p.expected("NULL after IS NOT")
				}
				p.expected("NULL or NOT NULL after IS")
			}
			p.advance()
			x = &isNullExpr{pos: pos, x: x, not: not}
		case p.isKeyword("IN"):
			p.advance()
			x = p.inList(pos, x, false)
		case p.isKeyword("BETWEEN"):
			p.advance()
			x = p.between(pos, x, false)
		case p.isKeyword("NOT"):
			next := p.peek()
			if next.kind != tKeyword || next.text != "IN" && next.text != "BETWEEN" {
				return x
			}
			p.advance()
			p.advance()
			if next.text == "IN" {
				x = p.inList(pos, x, true)
			} else {
				x = p.between(pos, x, true)
			}
		default:
			return x
		}
	}
}

func (p *parser) inList(pos position, x expr, not bool) expr {
	p.expectOp("(", "'(' after IN")
	e := &inExpr{pos: pos, x: x, not: not}
	for {
		e.list = append(e.list, p.expr())
		if !p.isOp(",") {
			break
		}
		p.advance()
	}
	p.expectOp(")", "',' or ')' in the IN list")
	return e
}

func (p *parser) between(pos position, x expr, not bool) expr {
	e := &betweenExpr{pos: pos, x: x, not: not}
	e.lo = p.additive()
	p.expectKeyword("AND", "AND in BETWEEN")
	e.hi = p.additive()
	return e
}

func (p *parser) additive() expr {
	x := p.multiplicative()
	for p.isOp("+") || p.isOp("-") {
		pos, op := p.tok.pos, p.tok.text
		p.advance()
		x = &binaryExpr{pos: pos, op: op, l: x, r: p.multiplicative()}
	}
	return x
}

func (p *parser) multiplicative() expr {
	x := p.unary()
	for p.isOp("*") || p.isOp("/") || p.isOp("%") {
		pos, op := p.tok.pos, p.tok.text
		p.advance()
		x = &binaryExpr{pos: pos, op: op, l: x, r: p.unary()}
	}
	return x
}

func (p *parser) unary() expr {
	if !p.isOp("-") {
		if p.isOp("+") {
			p.fail(p.tok.pos, "unary '+' is not supported")
		}
		return p.postfix()
	}
	pos := p.tok.pos
	p.advance()
	p.enter()
	x := p.unary()
	p.depth--
	if lit, ok := x.(*literal); ok && lit.v.isNumber() {
		// Fold -<number> into a literal; -9223372036854775808 is an int.
		switch {
		case lit.text == "9223372036854775808":
			return &literal{pos: pos, v: intValue(-1 << 63)}
		case lit.v.kind == KindFloat || lit.v.Int() == -1<<63:
			return &literal{pos: pos, v: floatValue(-lit.v.Float())}
		default:
			return &literal{pos: pos, v: intValue(-lit.v.Int())}
		}
	}
	return &unaryExpr{pos: pos, op: "-", x: x}
}

func (p *parser) postfix() expr {
	x := p.primary()
	for {
		switch {
		case p.isOp("."):
			p.advance()
			if p.tok.kind != tIdent && p.tok.kind != tQIdent && p.tok.kind != tKeyword {
				p.expected("a field name after '.'")
			}
			key := p.tok.text
			if p.tok.kind == tKeyword {
				key = p.tok.src
			}
			x = appendStep(x, pathStep{pos: p.tok.pos, key: key})
			p.advance()
		case p.isOp("["):
			pos := p.tok.pos
			p.advance()
			idx := p.expr()
			p.expectOp("]", "']'")
			step := pathStep{pos: pos, index: idx}
			if lit, ok := idx.(*literal); ok && lit.v.kind == KindString {
				step = pathStep{pos: pos, key: lit.v.str}
			}
			x = appendStep(x, step)
		default:
			return x
		}
	}
}

func appendStep(x expr, s pathStep) expr {
	if pe, ok := x.(*pathExpr); ok { // each node has one parent: extend it
		pe.steps = append(pe.steps, s)
		return pe
	}
	return &pathExpr{pos: x.position(), base: x, steps: []pathStep{s}}
}

func (p *parser) primary() expr {
	t := p.tok
	switch t.kind {
	case tNumber:
		p.advance()
		return &literal{pos: t.pos, v: p.number(t), text: t.text}
	case tString:
		p.advance()
		return &literal{pos: t.pos, v: stringValue(t.text)}
	case tQIdent:
		p.advance()
		return &pathExpr{pos: t.pos, steps: []pathStep{{pos: t.pos, key: t.text}}}
	case tIdent:
		if next := p.peek(); next.kind == tOp && next.text == "(" {
			return p.call()
		}
		p.advance()
		return &pathExpr{pos: t.pos, steps: []pathStep{{pos: t.pos, key: t.text}}}
	case tKeyword:
		switch t.text {
		case "TRUE":
			p.advance()
			return &literal{pos: t.pos, v: trueVal}
		case "FALSE":
			p.advance()
			return &literal{pos: t.pos, v: falseVal}
		case "NULL":
			p.advance()
			return &literal{pos: t.pos, v: null}
		case "CASE":
			return p.caseExpr()
		case "CAST":
			return p.cast()
		}
	case tDuration:
		p.fail(t.pos, "a duration such as %s may appear only in TUMBLING() or SLIDING()", quoteSnippet(t.text))
	case tOp:
		switch t.text {
		case "(":
			p.advance()
			x := p.expr()
			p.expectOp(")", "')'")
			return x
		case "*":
			p.advance()
			return &starExpr{pos: t.pos}
		}
	}
	p.expected("an expression")
	return nil
}

// number converts a number token: an integer that fits in int64 is an int,
// anything else a float.
func (p *parser) number(t token) Value {
	if !strings.ContainsAny(t.text, ".eE") {
		if n, err := strconv.ParseInt(t.text, 10, 64); err == nil {
			return intValue(n)
		}
	}
	f, err := strconv.ParseFloat(t.text, 64)
	if err != nil {
		p.fail(t.pos, "number %s is out of range", quoteSnippet(t.text))
	}
	return floatValue(f)
}

func (p *parser) call() expr {
	t := p.tok
	name := strings.ToLower(t.text)
	if aggregates[name] || windowFuncs[name] {
		return p.windowCall()
	}
	def := funcs[name]
	if def == nil {
		p.fail(t.pos, "unknown function '%s'", quoteSnippet(t.text))
	}
	p.advance() // name
	p.advance() // (
	c := &callExpr{pos: t.pos, name: name, def: def}
	if !p.isOp(")") {
		for {
			c.args = append(c.args, p.expr())
			if !p.isOp(",") {
				break
			}
			p.advance()
		}
	}
	p.expectOp(")", "',' or ')' after an argument of "+name+"()")
	if n := len(c.args); n < def.min || def.max >= 0 && n > def.max {
		p.fail(t.pos, "%s() takes %s, found %d", name, def.arity(), n)
	}
	if def.check != nil {
		if i, msg := def.check(c.args); msg != "" {
			p.fail(c.args[i].position(), "%s", msg)
		}
	}
	return c
}

func (p *parser) caseExpr() expr {
	e := &caseExpr{pos: p.tok.pos}
	p.advance()
	if !p.isKeyword("WHEN") {
		e.operand = p.expr()
	}
	if !p.isKeyword("WHEN") {
		p.expected("WHEN")
	}
	for p.isKeyword("WHEN") {
		p.advance()
		cond := p.expr()
		p.expectKeyword("THEN", "THEN")
		e.whens = append(e.whens, whenClause{cond: cond, result: p.expr()})
	}
	if p.isKeyword("ELSE") {
		p.advance()
		e.els = p.expr()
	}
	p.expectKeyword("END", "WHEN, ELSE or END")
	return e
}

var castTypes = map[string]Kind{
	"int": KindInt, "integer": KindInt, "bigint": KindInt,
	"float": KindFloat, "double": KindFloat, "real": KindFloat, "decimal": KindFloat,
	"string": KindString, "varchar": KindString, "text": KindString,
	"bool": KindBool, "boolean": KindBool,
}

func (p *parser) cast() expr {
	e := &castExpr{pos: p.tok.pos}
	p.advance()
	p.expectOp("(", "'(' after CAST")
	e.x = p.expr()
	p.expectKeyword("AS", "AS in CAST")
	if p.tok.kind != tIdent {
		p.expected("a type (int, float, string or bool)")
	}
	typ, ok := castTypes[strings.ToLower(p.tok.text)]
	if !ok {
		p.fail(p.tok.pos, "unknown type '%s': want int, float, string or bool", quoteSnippet(p.tok.text))
	}
	e.typ = typ
	p.advance()
	p.expectOp(")", "')' after the type in CAST")
	return e
}
