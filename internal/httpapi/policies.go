package httpapi

import (
	"errors"
	"net/http"

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
