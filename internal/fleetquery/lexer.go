package fleetquery

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Error is a query that cannot be parsed or compiled, with the line and
// column (in characters, from 1) where the problem is.
type Error struct {
	Line int
	Col  int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("at %d:%d: %s", e.Line, e.Col, e.Msg) }

// pos is a place in the query text.
type pos struct{ line, col int }

func (p pos) errorf(format string, args ...any) *Error {
	return &Error{Line: p.line, Col: p.col, Msg: fmt.Sprintf(format, args...)}
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tQuotedIdent // "segment" in a field path
	tString      // 'text'
	tNumber
	tDuration // 1h, 30m, 7d
	tLParen
	tRParen
	tComma
	tDot
	tOp // = != < <= > >=
	tPlus
	tMinus
)

type token struct {
	kind tokKind
	text string // identifier, operator, or the decoded string
	pos  pos
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of query"
	case tString:
		return "string '" + t.text + "'"
	case tQuotedIdent:
		return `"` + t.text + `"`
	}
	return "'" + t.text + "'"
}

// lex splits src into tokens.
func lex(src string) ([]token, error) {
	var toks []token
	line, col := 1, 1
	i := 0
	advance := func(n int) {
		for _, r := range src[i : i+n] {
			if r == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
		}
		i += n
	}
	for {
		for i < len(src) && (src[i] == ' ' || src[i] == '\t' || src[i] == '\n' || src[i] == '\r') {
			advance(1)
		}
		p := pos{line, col}
		if i >= len(src) {
			toks = append(toks, token{kind: tEOF, pos: p})
			return toks, nil
		}
		c := src[i]
		switch {
		case c == '(':
			toks = append(toks, token{tLParen, "(", p})
			advance(1)
		case c == ')':
			toks = append(toks, token{tRParen, ")", p})
			advance(1)
		case c == ',':
			toks = append(toks, token{tComma, ",", p})
			advance(1)
		case c == '.':
			toks = append(toks, token{tDot, ".", p})
			advance(1)
		case c == '+':
			toks = append(toks, token{tPlus, "+", p})
			advance(1)
		case c == '-':
			toks = append(toks, token{tMinus, "-", p})
			advance(1)
		case c == '=':
			toks = append(toks, token{tOp, "=", p})
			advance(1)
		case c == '!':
			if i+1 < len(src) && src[i+1] == '=' {
				toks = append(toks, token{tOp, "!=", p})
				advance(2)
			} else {
				return nil, p.errorf("unexpected '!' (did you mean '!=' or NOT?)")
			}
		case c == '<' || c == '>':
			op := string(c)
			if i+1 < len(src) && src[i+1] == '=' {
				op += "="
			} else if c == '<' && i+1 < len(src) && src[i+1] == '>' {
				op = "!="
			}
			toks = append(toks, token{tOp, op, p})
			advance(len(op))
		case c == '\'' || c == '"':
			s, n, err := quoted(src[i:], c, p)
			if err != nil {
				return nil, err
			}
			k := tString
			if c == '"' {
				k = tQuotedIdent
			}
			toks = append(toks, token{k, s, p})
			advance(n)
		case isDigit(c):
			j := i
			for j < len(src) && (isDigit(src[j]) || src[j] == '.') {
				j++
			}
			if j < len(src) && isIdentStart(src[j]) {
				// a duration: digits and a unit, e.g. 90s, 1h, 7d
				k := j
				for k < len(src) && isIdentPart(src[k]) {
					k++
				}
				toks = append(toks, token{tDuration, src[i:k], p})
				advance(k - i)
				break
			}
			toks = append(toks, token{tNumber, src[i:j], p})
			advance(j - i)
		case isIdentStart(c):
			j := i
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			toks = append(toks, token{tIdent, src[i:j], p})
			advance(j - i)
		default:
			r, _ := utf8.DecodeRuneInString(src[i:])
			return nil, p.errorf("unexpected character %q", r)
		}
	}
}

// quoted decodes a string quoted with q at the start of s: the quote
// doubled stands for itself. It returns the text and the bytes used.
func quoted(s string, q byte, p pos) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] == q {
			if i+1 < len(s) && s[i+1] == q {
				b.WriteByte(q)
				i++
				continue
			}
			if !utf8.ValidString(b.String()) {
				return "", 0, p.errorf("string is not valid UTF-8")
			}
			return b.String(), i + 1, nil
		}
		b.WriteByte(s[i])
	}
	return "", 0, p.errorf("unterminated %c-quoted text", q)
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isIdentPart(c byte) bool  { return isIdentStart(c) || isDigit(c) || c == '-' }
