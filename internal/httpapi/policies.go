package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/httpapi/wire"
	"github.com/moteiot/mote/internal/policy"
	"github.com/moteiot/mote/internal/registry"
)

// policyCreate is the body of POST /policies.
type policyCreate struct {
	Name        string           `json:"name"`
	Description string           `json:"description"`
	Document    *policy.Document `json:"document"`
}

// policyReplace is the body of PUT /policies/{name}. name may be given (a
// client may send back what it got) but must then match the path.
type policyReplace struct {
	Name        *string          `json:"name"`
	Description string           `json:"description"`
	Document    *policy.Document `json:"document"`
}

// policyOut gives a policy's statements as [] rather than null.
func policyOut(p registry.Policy) wire.Policy {
	if p.Document.Statements == nil {
		p.Document.Statements = []policy.Statement{}
	}
	return wire.Policy{Name: p.Name, Description: p.Description, Builtin: p.Builtin,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, Document: p.Document}
}

// checkDocument validates a policy document of a request body, so that
// the error's field is the path in the body: "document.statements[0].effect".
func checkDocument(d *policy.Document) error {
	if d == nil {
		return core.Invalid("document", `document is required: {"statements": [...]}`)
	}
	err := d.Validate()
	if ce, ok := errors.AsType[*core.Error](err); ok && ce.Field != "" {
		return &core.Error{Kind: ce.Kind, Field: "document." + ce.Field, Msg: ce.Msg, Err: ce.Err}
	}
	return err
}

func (s *server) createPolicy(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	var in policyCreate
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := core.ValidateName("name", in.Name); err != nil {
		return err
	}
	if err := checkDocument(in.Document); err != nil {
		return err
	}
	p, err := s.reg.CreatePolicy(r.Context(), in.Name, in.Description, *in.Document)
	if err != nil {
		return err
	}
	return created(w, "/policies/"+p.Name, policyOut(p))
}

func (s *server) listPolicies(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	ps, next, err := s.reg.ListPolicies(r.Context(), after, limit)
	if err != nil {
		return err
	}
	out := make([]wire.Policy, len(ps))
	for i := range ps {
		out[i] = policyOut(ps[i])
	}
	return writeJSON(w, http.StatusOK, newList(out, next))
}

func (s *server) getPolicy(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r, "policy")
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	p, err := s.reg.GetPolicy(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, policyOut(p))
}

// replacePolicy replaces a policy's description and document (an absent
// description becomes empty: this is a PUT).
func (s *server) replacePolicy(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r, "policy")
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	var in policyReplace
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Name != nil && *in.Name != name {
		return core.Invalid("name", "name %q does not match the path (%q); a policy cannot be renamed", *in.Name, name)
	}
	if err := checkDocument(in.Document); err != nil {
		return err
	}
	p, err := s.reg.UpdatePolicy(r.Context(), name, in.Description, *in.Document)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, policyOut(p))
}

func (s *server) deletePolicy(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r, "policy")
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	// The store refuses to delete the built-in default policy (409).
	if err := s.reg.DeletePolicy(r.Context(), name); err != nil {
		return err
	}
	return noContent(w)
}

// policyValidation is the answer of POST /policies:validate.
type policyValidation struct {
	Valid      bool `json:"valid"`
	Statements int  `json:"statements"`
}

// validatePolicy answers POST /policies:validate: the body is a policy
// document ({"statements": [...]}), checked as POST /policies would check
// it, and nothing is stored. A syntax error names its line and column, a
// wrong value its field ("statements[1].topics[0]"), so that an editor can
// point at it before saving.
func (s *server) validatePolicy(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return errTooLarge(MaxBodyBytes)
		}
		return core.Invalid("", "reading the request body: %v", err)
	}
	if ct := r.Header.Get("Content-Type"); len(bytes.TrimSpace(body)) > 0 {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || !isJSONType(mt) {
			return errUnsupportedMediaType(ct)
		}
	}
	doc, err := parsePolicyDocument(body)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, policyValidation{Valid: true, Statements: len(doc.Statements)})
}

// parsePolicyDocument parses and validates a policy document given as
// JSON text. Its errors are core.KindInvalid: a syntax error says the line
// and column, any other names the field.
func parsePolicyDocument(body []byte) (policy.Document, error) {
	var doc policy.Document
	if len(bytes.TrimSpace(body)) == 0 {
		return doc, core.Invalid("", `a policy document is required: {"statements": [...]}`)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			line, col := lineColumn(body, se.Offset-1)
			return doc, core.Invalid("", "malformed JSON at line %d, column %d: %s", line, col, strings.TrimPrefix(se.Error(), "json: "))
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			line, col := lineColumn(body, int64(len(body)))
			return doc, core.Invalid("", "malformed JSON at line %d, column %d: the document ends too early", line, col)
		}
		return doc, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		line, col := lineColumn(body, dec.InputOffset()-1)
		return doc, core.Invalid("", "malformed JSON at line %d, column %d: text after the document", line, col)
	}
	if err := checkDuplicateKeys(body); err != nil {
		return doc, err
	}
	return doc, doc.Validate()
}

// lineColumn turns a byte offset of text into a 1-based line and column
// (in characters).
func lineColumn(text []byte, off int64) (line, col int) {
	if off > int64(len(text)) {
		off = int64(len(text))
	}
	if off < 0 {
		off = 0
	}
	before := text[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	last := before[bytes.LastIndexByte(before, '\n')+1:]
	return line, len(bytes.Runes(last)) + 1
}
