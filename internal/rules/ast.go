package rules

import (
	"strconv"
	"strings"
)

// The AST. Every node can print itself in the canonical form of the
// dialect: keywords upper case, function names lower case, identifiers
// quoted only when they must be, parentheses only where precedence needs
// them. Parsing the canonical form gives the same canonical form.

// Operator precedence, lowest first.
const (
	precOr = 1 + iota
	precAnd
	precNot
	precCmp // = != < <= > >= IS IN BETWEEN
	precAdd // + -
	precMul // * / %
	precUnary
	precPrimary // literals, paths, calls, CASE, CAST, parentheses
)

type expr interface {
	position() position
	prec() int
	write(b *strings.Builder)
}

// literal is a constant: number, string, TRUE, FALSE or NULL.
type literal struct {
	pos  position
	v    Value
	text string // a number's source text
}

// starExpr is * inside an expression: the payload as JSON.
type starExpr struct{ pos position }

// pathExpr is a field of the payload (base == nil: steps[0] is a key of
// the payload object), or steps applied to another expression.
type pathExpr struct {
	pos   position
	base  expr
	steps []pathStep
}

// pathStep is .key (index == nil) or [index].
type pathStep struct {
	pos   position
	key   string
	index expr
}

type unaryExpr struct {
	pos position
	op  string // "NOT" or "-"
	x   expr
}

type binaryExpr struct {
	pos  position
	op   string // OR AND = != < <= > >= + - * / %
	l, r expr
}

type isNullExpr struct {
	pos position
	x   expr
	not bool
}

type inExpr struct {
	pos  position
	x    expr
	list []expr
	not  bool
}

type betweenExpr struct {
	pos       position
	x, lo, hi expr
	not       bool
}

type caseExpr struct {
	pos     position
	operand expr // nil for CASE WHEN cond ...
	whens   []whenClause
	els     expr // nil: no ELSE
}

type whenClause struct{ cond, result expr }

type callExpr struct {
	pos  position
	name string // lower case
	def  *funcDef
	args []expr
}

type castExpr struct {
	pos position
	x   expr
	typ Kind // KindInt, KindFloat, KindString or KindBool
}

// selectItem is one entry of the projection.
type selectItem struct {
	pos   position
	x     expr   // nil for the bare * that merges the payload's members
	alias string // the AS name, or ""
	as    bool   // AS was given
	name  string // the output key: the alias, the last key of a path, or _N
}

// statement is a parsed rule.
type statement struct {
	items   []selectItem
	from    string
	fromPos position
	where   expr         // nil: no WHERE
	group   *groupClause // nil: not windowed
	having  expr         // nil: no HAVING
	aggs    []*aggExpr   // the aggregates of SELECT and HAVING, by idx
}

func (e *literal) position() position     { return e.pos }
func (e *starExpr) position() position    { return e.pos }
func (e *pathExpr) position() position    { return e.pos }
func (e *unaryExpr) position() position   { return e.pos }
func (e *binaryExpr) position() position  { return e.pos }
func (e *isNullExpr) position() position  { return e.pos }
func (e *inExpr) position() position      { return e.pos }
func (e *betweenExpr) position() position { return e.pos }
func (e *caseExpr) position() position    { return e.pos }
func (e *callExpr) position() position    { return e.pos }
func (e *castExpr) position() position    { return e.pos }

func (e *literal) prec() int {
	if e.v.isNumber() && (e.v.Float() < 0 || e.v.kind == KindFloat && e.v.num>>63 == 1) {
		return precUnary // printed with a leading '-'
	}
	return precPrimary
}
func (e *starExpr) prec() int    { return precPrimary }
func (e *pathExpr) prec() int    { return precPrimary }
func (e *isNullExpr) prec() int  { return precCmp }
func (e *inExpr) prec() int      { return precCmp }
func (e *betweenExpr) prec() int { return precCmp }
func (e *caseExpr) prec() int    { return precPrimary }
func (e *callExpr) prec() int    { return precPrimary }
func (e *castExpr) prec() int    { return precPrimary }

func (e *unaryExpr) prec() int {
	if e.op == "NOT" {
		return precNot
	}
	return precUnary
}

func (e *binaryExpr) prec() int { return binaryPrec[e.op] }

var binaryPrec = map[string]int{
	"OR": precOr, "AND": precAnd,
	"=": precCmp, "!=": precCmp, "<": precCmp, "<=": precCmp, ">": precCmp, ">=": precCmp,
	"+": precAdd, "-": precAdd, "*": precMul, "/": precMul, "%": precMul,
}

// writeOperand writes x, in parentheses if its precedence is below min.
func writeOperand(b *strings.Builder, x expr, min int) {
	if x.prec() < min {
		b.WriteByte('(')
		x.write(b)
		b.WriteByte(')')
		return
	}
	x.write(b)
}

func (e *literal) write(b *strings.Builder) { writeValueLiteral(b, e.v) }

func writeValueLiteral(b *strings.Builder, v Value) {
	switch v.kind {
	case KindNull:
		b.WriteString("NULL")
	case KindBool:
		if v.Bool() {
			b.WriteString("TRUE")
		} else {
			b.WriteString("FALSE")
		}
	case KindInt:
		b.WriteString(strconv.FormatInt(v.Int(), 10))
	case KindFloat:
		s := strconv.FormatFloat(v.Float(), 'g', -1, 64)
		if !strings.ContainsAny(s, ".eE") {
			s += ".0"
		}
		b.WriteString(s)
	case KindString:
		writeQuoted(b, v.str, '\'')
	default:
		b.WriteString(v.String())
	}
}

func writeQuoted(b *strings.Builder, s string, q byte) {
	b.WriteByte(q)
	for i := 0; i < len(s); i++ {
		if s[i] == q {
			b.WriteByte(q)
		}
		b.WriteByte(s[i])
	}
	b.WriteByte(q)
}

// writeIdent writes a field name or alias, quoted unless it is a plain
// identifier that is not a keyword.
func writeIdent(b *strings.Builder, name string) {
	if isPlainIdent(name) {
		b.WriteString(name)
		return
	}
	writeQuoted(b, name, '"')
}

func isPlainIdent(s string) bool {
	if s == "" || !isIdentStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentChar(s[i]) {
			return false
		}
	}
	return !keywords[strings.ToUpper(s)]
}

func (e *starExpr) write(b *strings.Builder) { b.WriteByte('*') }

func (e *pathExpr) write(b *strings.Builder) {
	steps := e.steps
	if e.base == nil {
		writeIdent(b, steps[0].key)
		steps = steps[1:]
	} else {
		writeOperand(b, e.base, precPrimary)
	}
	for _, s := range steps {
		if s.index == nil {
			b.WriteByte('.')
			writeIdent(b, s.key)
		} else {
			b.WriteByte('[')
			s.index.write(b)
			b.WriteByte(']')
		}
	}
}

func (e *unaryExpr) write(b *strings.Builder) {
	if e.op == "NOT" {
		b.WriteString("NOT ")
		writeOperand(b, e.x, precNot)
		return
	}
	b.WriteByte('-')
	if e.x.prec() == precUnary {
		b.WriteByte(' ') // "--" would start a comment
	}
	writeOperand(b, e.x, precUnary)
}

func (e *binaryExpr) write(b *strings.Builder) {
	p := e.prec()
	writeOperand(b, e.l, p)
	b.WriteByte(' ')
	b.WriteString(e.op)
	b.WriteByte(' ')
	writeOperand(b, e.r, p+1)
}

func (e *isNullExpr) write(b *strings.Builder) {
	writeOperand(b, e.x, precCmp)
	if e.not {
		b.WriteString(" IS NOT NULL")
	} else {
		b.WriteString(" IS NULL")
	}
}

func (e *inExpr) write(b *strings.Builder) {
	writeOperand(b, e.x, precCmp)
	if e.not {
		b.WriteString(" NOT")
	}
	b.WriteString(" IN (")
	writeList(b, e.list)
	b.WriteByte(')')
}

func (e *betweenExpr) write(b *strings.Builder) {
	writeOperand(b, e.x, precCmp)
	if e.not {
		b.WriteString(" NOT")
	}
	b.WriteString(" BETWEEN ")
	writeOperand(b, e.lo, precAdd)
	b.WriteString(" AND ")
	writeOperand(b, e.hi, precAdd)
}

func (e *caseExpr) write(b *strings.Builder) {
	b.WriteString("CASE")
	if e.operand != nil {
		b.WriteByte(' ')
		e.operand.write(b)
	}
	for _, w := range e.whens {
		b.WriteString(" WHEN ")
		w.cond.write(b)
		b.WriteString(" THEN ")
		w.result.write(b)
	}
	if e.els != nil {
		b.WriteString(" ELSE ")
		e.els.write(b)
	}
	b.WriteString(" END")
}

func (e *callExpr) write(b *strings.Builder) {
	b.WriteString(e.name)
	b.WriteByte('(')
	writeList(b, e.args)
	b.WriteByte(')')
}

func writeList(b *strings.Builder, list []expr) {
	for i, x := range list {
		if i > 0 {
			b.WriteString(", ")
		}
		x.write(b)
	}
}

var castTypeNames = map[Kind]string{KindInt: "int", KindFloat: "float", KindString: "string", KindBool: "bool"}

func (e *castExpr) write(b *strings.Builder) {
	b.WriteString("CAST(")
	e.x.write(b)
	b.WriteString(" AS ")
	b.WriteString(castTypeNames[e.typ])
	b.WriteByte(')')
}

func (s *statement) write(b *strings.Builder) {
	b.WriteString("SELECT ")
	for i, it := range s.items {
		if i > 0 {
			b.WriteString(", ")
		}
		switch {
		case it.x == nil:
			b.WriteByte('*')
		case !it.as && isStar(it.x):
			b.WriteString("(*)") // not the bare * that merges members
		default:
			it.x.write(b)
		}
		if it.as {
			b.WriteString(" AS ")
			writeIdent(b, it.alias)
		}
	}
	b.WriteString(" FROM ")
	writeQuoted(b, s.from, '\'')
	if s.where != nil {
		b.WriteString(" WHERE ")
		s.where.write(b)
	}
	if s.group != nil {
		s.group.write(b)
	}
	if s.having != nil {
		b.WriteString(" HAVING ")
		s.having.write(b)
	}
}

func isStar(x expr) bool {
	_, ok := x.(*starExpr)
	return ok
}
