// Package thingimport imports things in bulk (docs/import.md): a CSV file
// with a header row or JSON lines, parsed as a stream, checked row by row,
// and created in one store transaction: all or none (atomic), or every
// good row (bestEffort); a dry run only checks.
package thingimport

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Formats of an import body.
const (
	FormatCSV   = "csv"
	FormatJSONL = "jsonl"
)

// Credential kinds a row may ask for.
const (
	CredentialNone   = ""
	CredentialSecret = "secret"
)

// MaxLine bounds one line of JSON lines (and one CSV record).
const MaxLine = 64 << 10

// Row is one parsed row: the thing it describes, the credential it asks
// for, and the line it starts on. Err is set when the row is well-formed
// as CSV or JSON but wrong (an unknown credential kind); such a row is
// reported, not fatal.
type Row struct {
	Line       int
	Thing      store.Thing
	Credential string
	Err        error
}

// Parser reads rows one at a time.
type Parser interface {
	// Next returns the next row, io.EOF at the end, or a *SyntaxError
	// when the file is malformed (the import stops: 400).
	Next() (Row, error)
}

// SyntaxError is a malformed file: its line and what is wrong.
type SyntaxError struct {
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// NewParser returns the parser of a format.
func NewParser(format string, r io.Reader) (Parser, error) {
	switch format {
	case FormatCSV:
		return newCSVParser(r)
	case FormatJSONL:
		return newJSONLParser(r), nil
	}
	return nil, fmt.Errorf("unknown format %q", format)
}

func credential(v string) (string, error) {
	switch strings.TrimSpace(v) {
	case "", "none":
		return CredentialNone, nil
	case "secret":
		return CredentialSecret, nil
	}
	return "", core.Invalid("credential", "credential must be secret or none, not %q", clip(v))
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// --- CSV ---

type csvParser struct {
	r    *csv.Reader
	cols []func(*Row, string)
	line int // of the last record
}

// errLongLine is a physical line longer than MaxLine.
var errLongLine = errors.New("long line")

// countingReader fails on a physical line longer than MaxLine, so that
// one record cannot grow without bound.
type countingReader struct {
	r    io.Reader
	line int // bytes since the last newline
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	for _, b := range p[:n] {
		if b == '\n' {
			c.line = 0
		} else if c.line++; c.line > MaxLine {
			return 0, errLongLine
		}
	}
	return n, err
}

func newCSVParser(r io.Reader) (*csvParser, error) {
	p := &csvParser{r: csv.NewReader(&countingReader{r: r})}
	p.r.ReuseRecord = true
	p.r.TrimLeadingSpace = true
	header, err := p.r.Read()
	if err == io.EOF {
		return nil, &SyntaxError{Line: 1, Msg: "the file is empty: it needs a header row such as name,type,attributes.site,groups,credential"}
	}
	if err != nil {
		return nil, csvError(err, 1)
	}
	seen := map[string]bool{}
	hasName := false
	for i, h := range header {
		h = strings.TrimSpace(h)
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // a byte order mark
		}
		if seen[h] {
			return nil, &SyntaxError{Line: 1, Msg: fmt.Sprintf("column %q appears twice in the header", clip(h))}
		}
		seen[h] = true
		var set func(*Row, string)
		switch {
		case h == "name":
			hasName = true
			set = func(r *Row, v string) { r.Thing.Name = v }
		case h == "type":
			set = func(r *Row, v string) { r.Thing.Type = v }
		case h == "groups":
			set = func(r *Row, v string) { r.Thing.Groups = splitList(v) }
		case h == "tags":
			set = func(r *Row, v string) { r.Thing.Tags = splitList(v) }
		case h == "credential":
			set = func(r *Row, v string) {
				c, err := credential(v)
				r.Credential = c
				if err != nil && r.Err == nil {
					r.Err = err
				}
			}
		case strings.HasPrefix(h, "attributes.") && len(h) > len("attributes."):
			key := strings.TrimPrefix(h, "attributes.")
			set = func(r *Row, v string) {
				if v == "" {
					return // an empty cell sets no attribute
				}
				if r.Thing.Attributes == nil {
					r.Thing.Attributes = map[string]string{}
				}
				r.Thing.Attributes[key] = v
			}
		default:
			return nil, &SyntaxError{Line: 1, Msg: fmt.Sprintf("unknown column %q (known: name, type, groups, tags, credential, attributes.KEY)", clip(h))}
		}
		p.cols = append(p.cols, set)
	}
	if !hasName {
		return nil, &SyntaxError{Line: 1, Msg: "the header has no name column"}
	}
	p.r.FieldsPerRecord = len(header)
	return p, nil
}

// splitList splits a cell of names separated by ';' (or '|').
func splitList(v string) []string {
	var out []string
	for f := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ';' || r == '|' }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func csvError(err error, line int) error {
	if errors.Is(err, errLongLine) {
		return &SyntaxError{Line: line, Msg: fmt.Sprintf("a line longer than %d bytes", MaxLine)}
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		msg := pe.Err.Error()
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			msg = "wrong number of fields (the header has a different number)"
		}
		return &SyntaxError{Line: pe.StartLine, Msg: "malformed CSV: " + msg}
	}
	return err
}

func (p *csvParser) Next() (Row, error) {
	for {
		rec, err := p.r.Read()
		if err == io.EOF {
			return Row{}, io.EOF
		}
		if err != nil {
			return Row{}, csvError(err, p.line+1)
		}
		line, _ := p.r.FieldPos(0)
		p.line = line
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" && len(p.cols) > 1 {
			continue // a blank line
		}
		row := Row{Line: line}
		for i, v := range rec {
			p.cols[i](&row, strings.TrimSpace(v))
		}
		return row, nil
	}
}

// --- JSON lines ---

type jsonlParser struct {
	sc   *bufio.Scanner
	line int
}

func newJSONLParser(r io.Reader) *jsonlParser {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	return &jsonlParser{sc: sc}
}

type jsonRow struct {
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Attributes map[string]string `json:"attributes"`
	Groups     []string          `json:"groups"`
	Tags       []string          `json:"tags"`
	Credential string            `json:"credential"`
}

func (p *jsonlParser) Next() (Row, error) {
	for p.sc.Scan() {
		p.line++
		b := bytes.TrimSpace(p.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		var jr jsonRow
		if err := dec.Decode(&jr); err != nil {
			return Row{}, &SyntaxError{Line: p.line, Msg: "malformed JSON: " + strings.TrimPrefix(err.Error(), "json: ")}
		}
		if dec.More() {
			return Row{}, &SyntaxError{Line: p.line, Msg: "more than one JSON value on the line"}
		}
		row := Row{Line: p.line, Thing: store.Thing{Name: jr.Name, Type: jr.Type, Attributes: jr.Attributes, Groups: jr.Groups, Tags: jr.Tags}}
		row.Credential, row.Err = credential(jr.Credential)
		return row, nil
	}
	if err := p.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return Row{}, &SyntaxError{Line: p.line + 1, Msg: fmt.Sprintf("a line longer than %d bytes", MaxLine)}
		}
		return Row{}, err
	}
	return Row{}, io.EOF
}
