package rules

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on a statement, so that hostile input cannot exhaust the parser.
const (
	MaxSQLBytes = 16 << 10 // longest statement accepted
	MaxDepth    = 64       // deepest nesting of expressions
)

// ParseError is a statement that cannot be parsed: where (1-based line and
// column, in characters) and what was wrong.
type ParseError struct {
	Line int
	Pos  int // column
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("at %d:%d: %s", e.Line, e.Pos, e.Msg) }

// EvalError is an evaluation failure (a cast that cannot be done), with the
// position in the statement of the expression that failed.
type EvalError struct {
	Line int
	Pos  int // column
	Msg  string
}

func (e *EvalError) Error() string { return fmt.Sprintf("at %d:%d: %s", e.Line, e.Pos, e.Msg) }

// position is a place in the statement text.
type position struct {
	off  int // byte offset
	line int // 1-based
	col  int // 1-based, in characters
}

type tokenKind uint8

const (
	tEOF      tokenKind = iota
	tIdent              // bare identifier (not a keyword)
	tQIdent             // "quoted identifier"
	tKeyword            // reserved word; text holds it upper-cased
	tString             // 'string'
	tNumber             // 123, 1.5, 2e3
	tOp                 // punctuation and operators; text holds it
	tDuration           // 30s, 5m, 1h, 500ms: text holds it (window specs)
)

type token struct {
	kind tokenKind
	text string // identifier name, keyword (upper case), string value, number text, operator
	src  string // the source text of the token
	pos  position
}

// keywords are reserved: a field with one of these names must be quoted.
var keywords = map[string]bool{
	"SELECT": true, "FROM": true, "WHERE": true, "AS": true,
	"AND": true, "OR": true, "NOT": true, "IN": true, "IS": true, "BETWEEN": true,
	"NULL": true, "TRUE": true, "FALSE": true,
	"CASE": true, "WHEN": true, "THEN": true, "ELSE": true, "END": true, "CAST": true,
}

// describe names a token in an error message.
func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of input"
	case tString:
		return "string " + quoteSnippet(t.src)
	}
	return "'" + quoteSnippet(t.src) + "'"
}

// quoteSnippet shortens a long token for an error message.
func quoteSnippet(s string) string {
	const max = 32
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	n := 0
	for i := range s {
		if n == max {
			return s[:i] + "..."
		}
		n++
	}
	return s
}

// lexer splits a statement into tokens, one at a time.
type lexer struct {
	src       string
	off       int
	line      int
	lineStart int // byte offset of the current line

	// The last column computed, so that columns are counted incrementally.
	colLine, colOff, col int
}

// posAt returns the position of byte offset off on the current line; off
// does not decrease while the line stays the same.
func (l *lexer) posAt(off int) position {
	if l.colLine != l.line || off < l.colOff || l.colOff < l.lineStart {
		l.colLine, l.colOff, l.col = l.line, l.lineStart, 1
	}
	l.col += utf8.RuneCountInString(l.src[l.colOff:off])
	l.colOff = off
	return position{off: off, line: l.line, col: l.col}
}

func (l *lexer) errorf(p position, format string, args ...any) *ParseError {
	return &ParseError{Line: p.line, Pos: p.col, Msg: fmt.Sprintf(format, args...)}
}

// skip passes over white space and comments (-- to end of line, /* */).
func (l *lexer) skip() *ParseError {
	for l.off < len(l.src) {
		c := l.src[l.off]
		switch {
		case c == '\n':
			l.off++
			l.line++
			l.lineStart = l.off
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			l.off++
		case strings.HasPrefix(l.src[l.off:], "--"):
			end := strings.IndexByte(l.src[l.off:], '\n')
			if end < 0 {
				l.off = len(l.src)
			} else {
				l.off += end
			}
		case strings.HasPrefix(l.src[l.off:], "/*"):
			start := l.posAt(l.off)
			end := strings.Index(l.src[l.off+2:], "*/")
			if end < 0 {
				return l.errorf(start, "unterminated comment")
			}
			stop := l.off + 2 + end + 2
			for l.off < stop {
				if l.src[l.off] == '\n' {
					l.line++
					l.lineStart = l.off + 1
				}
				l.off++
			}
		default:
			return nil
		}
	}
	return nil
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// next returns the next token.
func (l *lexer) next() (token, *ParseError) {
	if err := l.skip(); err != nil {
		return token{}, err
	}
	p := l.posAt(l.off)
	if l.off >= len(l.src) {
		return token{kind: tEOF, pos: p}, nil
	}
	start := l.off
	c := l.src[l.off]
	switch {
	case isIdentStart(c):
		for l.off < len(l.src) && isIdentChar(l.src[l.off]) {
			l.off++
		}
		word := l.src[start:l.off]
		if up := strings.ToUpper(word); keywords[up] {
			return token{kind: tKeyword, text: up, src: word, pos: p}, nil
		}
		return token{kind: tIdent, text: word, src: word, pos: p}, nil
	case isDigit(c):
		for l.off < len(l.src) && isDigit(l.src[l.off]) {
			l.off++
		}
		if l.off+1 < len(l.src) && l.src[l.off] == '.' && isDigit(l.src[l.off+1]) {
			l.off++
			for l.off < len(l.src) && isDigit(l.src[l.off]) {
				l.off++
			}
		}
		if l.off < len(l.src) && (l.src[l.off] == 'e' || l.src[l.off] == 'E') {
			j := l.off + 1
			if j < len(l.src) && (l.src[j] == '+' || l.src[j] == '-') {
				j++
			}
			if j < len(l.src) && isDigit(l.src[j]) {
				for j < len(l.src) && isDigit(l.src[j]) {
					j++
				}
				l.off = j
			}
		}
		text := l.src[start:l.off]
		if l.off < len(l.src) && isIdentStart(l.src[l.off]) && !strings.ContainsAny(text, "eE") {
			// A duration (window specs): digits and units, as in 5m or 1h30m.
			j := l.off
			for j < len(l.src) && (isIdentChar(l.src[j]) || l.src[j] == '.') {
				j++
			}
			if d := l.src[start:j]; isDuration(d) {
				l.off = j
				return token{kind: tDuration, text: d, src: d, pos: p}, nil
			}
		}
		if l.off < len(l.src) && isIdentChar(l.src[l.off]) {
			return token{}, l.errorf(p, "malformed number '%s'", quoteSnippet(text+l.src[l.off:l.off+1]))
		}
		return token{kind: tNumber, text: text, src: text, pos: p}, nil
	case c == '\'' || c == '"':
		s, ok := l.quoted(c)
		if !ok {
			if c == '\'' {
				return token{}, l.errorf(p, "unterminated string")
			}
			return token{}, l.errorf(p, "unterminated quoted identifier")
		}
		kind := tString
		if c == '"' {
			kind = tQIdent
		}
		return token{kind: kind, text: s, src: l.src[start:l.off], pos: p}, nil
	}
	for _, op := range [...]string{"<=", ">=", "<>", "!=", "(", ")", "[", "]", ",", ".", "*", "+", "-", "/", "%", "=", "<", ">", ";"} {
		if strings.HasPrefix(l.src[l.off:], op) {
			l.off += len(op)
			return token{kind: tOp, text: op, src: op, pos: p}, nil
		}
	}
	r, _ := utf8.DecodeRuneInString(l.src[l.off:])
	if c == '|' {
		return token{}, l.errorf(p, "unexpected '|': join strings with concat()")
	}
	if c == '`' {
		return token{}, l.errorf(p, "unexpected '`': quote identifiers with double quotes")
	}
	if unicode.IsLetter(r) {
		return token{}, l.errorf(p, "unexpected character %s: quote names that are not plain ASCII identifiers, as in \"température\"", strconv.QuoteRune(r))
	}
	return token{}, l.errorf(p, "unexpected character %s", strconv.QuoteRune(r))
}

// quoted reads a string or quoted identifier starting at the quote q at
// l.off; a doubled quote inside stands for one. Newlines are allowed.
func (l *lexer) quoted(q byte) (string, bool) {
	i := l.off + 1
	var b strings.Builder
	from := i
	for i < len(l.src) {
		c := l.src[i]
		if c == '\n' {
			l.line++
			l.lineStart = i + 1
		}
		if c != q {
			i++
			continue
		}
		if i+1 < len(l.src) && l.src[i+1] == q {
			b.WriteString(l.src[from : i+1])
			i += 2
			from = i
			continue
		}
		l.off = i + 1
		if b.Len() == 0 {
			return l.src[from:i], true
		}
		b.WriteString(l.src[from:i])
		return b.String(), true
	}
	return "", false
}
