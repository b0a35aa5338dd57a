package fleetquery

import (
	"strconv"
	"strings"
	"time"
)

// Expr is a node of a parsed query.
type Expr interface {
	// appendTo writes the expression in canonical form.
	appendTo(b *strings.Builder)
}

// And is true when every term is.
type And struct{ Terms []Expr }

// Or is true when any term is.
type Or struct{ Terms []Expr }

// Not negates X.
type Not struct{ X Expr }

// Exists is true when the thing has a value for Field.
type Exists struct{ Field Field }

// Compare compares a field (or, with Version, the field read as a version
// string) with a literal.
type Compare struct {
	Field   Field
	Version bool
	Op      string // = != < <= > >=
	Value   Value
}

// In is true when the field equals one of Values (for groups and tags:
// when the thing is in one of them).
type In struct {
	Field  Field
	Values []Value
}

// Like is true when the field matches Pattern: * is any run of
// characters, ? one character.
type Like struct {
	Field   Field
	Pattern string
}

// Field is a dotted field path as written.
type Field struct {
	Path []string
	at   pos
}

// Value kinds.
const (
	ValString = iota + 1
	ValNumber
	ValBool
	ValNow // now() plus Offset
)

// Value is a literal.
type Value struct {
	Kind   int
	Str    string
	Num    float64
	Bool   bool
	Offset time.Duration
	text   string // as written: numbers and durations print back the same
	at     pos
}

func (e *And) appendTo(b *strings.Builder) { appendJoined(b, e.Terms, " AND ") }
func (e *Or) appendTo(b *strings.Builder)  { appendJoined(b, e.Terms, " OR ") }

func appendJoined(b *strings.Builder, terms []Expr, sep string) {
	b.WriteByte('(')
	for i, t := range terms {
		if i > 0 {
			b.WriteString(sep)
		}
		t.appendTo(b)
	}
	b.WriteByte(')')
}

func (e *Not) appendTo(b *strings.Builder) {
	b.WriteString("NOT ")
	e.X.appendTo(b)
}

func (e *Exists) appendTo(b *strings.Builder) {
	b.WriteString("EXISTS ")
	e.Field.appendTo(b)
}

func (e *Compare) appendTo(b *strings.Builder) {
	if e.Version {
		b.WriteString("version(")
		e.Field.appendTo(b)
		b.WriteByte(')')
	} else {
		e.Field.appendTo(b)
	}
	b.WriteString(" " + e.Op + " ")
	e.Value.appendTo(b)
}

func (e *In) appendTo(b *strings.Builder) {
	e.Field.appendTo(b)
	b.WriteString(" IN (")
	for i, v := range e.Values {
		if i > 0 {
			b.WriteString(", ")
		}
		v.appendTo(b)
	}
	b.WriteByte(')')
}

func (e *Like) appendTo(b *strings.Builder) {
	e.Field.appendTo(b)
	b.WriteString(" LIKE ")
	appendString(b, e.Pattern)
}

func (f Field) appendTo(b *strings.Builder) {
	for i, s := range f.Path {
		if i > 0 {
			b.WriteByte('.')
		}
		if plainSegment(s) {
			b.WriteString(s)
		} else {
			b.WriteString(`"` + strings.ReplaceAll(s, `"`, `""`) + `"`)
		}
	}
}

// String returns the path as written, dotted, without quotes.
func (f Field) String() string { return strings.Join(f.Path, ".") }

// plainSegment reports whether s lexes as one identifier (so needs no
// quotes) and is not a keyword.
func plainSegment(s string) bool {
	if s == "" || !isIdentStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentPart(s[i]) {
			return false
		}
	}
	return !isKeyword(s)
}

func (v Value) appendTo(b *strings.Builder) {
	switch v.Kind {
	case ValString:
		appendString(b, v.Str)
	case ValNumber:
		b.WriteString(v.text)
	case ValBool:
		b.WriteString(strconv.FormatBool(v.Bool))
	case ValNow:
		b.WriteString("now()")
		if v.text != "" {
			b.WriteString(" " + v.text)
		}
	}
}

func appendString(b *strings.Builder, s string) {
	b.WriteString("'" + strings.ReplaceAll(s, "'", "''") + "'")
}

var keywords = map[string]bool{"and": true, "or": true, "not": true, "in": true, "like": true, "exists": true, "true": true, "false": true}

func isKeyword(s string) bool { return keywords[strings.ToLower(s)] }
