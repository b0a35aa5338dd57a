package httpapi

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/httpapi/wire"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/ruleengine"
	"github.com/moteiot/mote/internal/store"
)

// ruleBody is the body of POST /rules and PUT /rules/{name}.
type ruleBody struct {
	Name        string          `json:"name"`
	SQL         string          `json:"sql"`
	Description string          `json:"description"`
	Enabled     *bool           `json:"enabled"`
	Actions     json.RawMessage `json:"actions"`
	ErrorAction json.RawMessage `json:"errorAction"`
}

// ruleOut is a rule in an answer: the stored rule, its secrets redacted
// unless the caller is an admin, and its counters since the server
// started.
type ruleOut = wire.Rule

// ruleMetrics are a rule's counters since the server started.
type ruleMetrics = wire.RuleMetrics

// ruleOut builds the answer for rule r: only an admin sees the secrets of
// its webhook actions (header values, the URL's password).
func (s *server) ruleOut(r *http.Request, e *ruleengine.Engine, rule store.Rule) ruleOut {
	if t, ok := tokenFrom(r.Context()); !ok || t.Role != registry.RoleAdmin {
		rule = ruleengine.Redact(rule)
	}
	st := e.Stats(rule.Name)
	out := ruleOut{Name: rule.Name, SQL: rule.SQL, Description: rule.Description, Enabled: rule.Enabled,
		Actions: rule.Actions, ErrorAction: rule.ErrorAction, CreatedAt: rule.CreatedAt, UpdatedAt: rule.UpdatedAt}
	m := &out.Metrics
	m.Matched, m.Errors, m.ActionsFailed, m.ActionsDropped = st.Matched, st.Errors, st.ActionsFailed, st.ActionsDropped()
	m.Dropped.QueueFull, m.Dropped.BreakerOpen, m.Dropped.RetriesExhausted = st.DroppedQueueFull, st.DroppedBreakerOpen, st.DroppedRetriesExhausted
	m.BreakerOpen = st.BreakerOpen
	return out
}

// rulePatch is the body of PATCH /rules/{name}.
type rulePatch struct {
	Enabled     *bool   `json:"enabled"`
	Description *string `json:"description"`
}

// ruleTest is the body of POST /rules/test.
type ruleTest struct {
	SQL      string          `json:"sql"`
	Topic    string          `json:"topic"`
	Payload  json.RawMessage `json:"payload"`
	ClientID string          `json:"clientId"`
	Thing    string          `json:"thing"`
	// Properties are the message's user properties, by name.
	Properties map[string]string `json:"properties"`
	// Messages are the timed messages a windowed statement is tried on.
	Messages []ruleTestMessage `json:"messages"`
}

// ruleTestMessage is one message of a windowed statement's test.
type ruleTestMessage struct {
	Topic    string          `json:"topic"`
	Payload  json.RawMessage `json:"payload"`
	ClientID string          `json:"clientId"`
	Thing    string          `json:"thing"`
	At       time.Time       `json:"at"`
}

// rawPayload is a test message's payload: a JSON string is the payload as
// is, any other JSON value its text.
func rawPayload(p json.RawMessage) []byte {
	var str string
	if len(p) > 0 && p[0] == '"' && json.Unmarshal(p, &str) == nil {
		return []byte(str)
	}
	return []byte(p)
}

func (s *server) ruleEngine() (*ruleengine.Engine, error) {
	if s.rules == nil {
		return nil, core.Errorf(core.KindUnavailable, "the rules engine is not enabled on this server")
	}
	return s.rules, nil
}

func (in ruleBody) rule() store.Rule {
	enabled := true
	if in.Enabled != nil {
		enabled = *in.Enabled
	}
	return store.Rule{Name: in.Name, SQL: in.SQL, Description: in.Description, Enabled: enabled,
		Actions: in.Actions, ErrorAction: in.ErrorAction}
}

func (s *server) createRule(w http.ResponseWriter, r *http.Request) error {
	e, err := s.ruleEngine()
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	var in ruleBody
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.SQL == "" {
		return core.Invalid("sql", "sql is required")
	}
	out, err := e.Create(r.Context(), in.rule())
	if err != nil {
		return err
	}
	return created(w, "/rules/"+out.Name, s.ruleOut(r, e, out))
}

func (s *server) listRules(w http.ResponseWriter, r *http.Request) error {
	e, err := s.ruleEngine()
	if err != nil {
		return err
	}
	after, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	list, next, err := pageAfter(after, limit, func(after string, n int) ([]store.Rule, error) {
		return e.List(r.Context(), after, n)
	}, func(rl store.Rule) string { return rl.Name })
	if err != nil {
		return err
	}
	items := make([]ruleOut, len(list))
	for i, rule := range list {
		items[i] = s.ruleOut(r, e, rule)
	}
	return writeJSON(w, http.StatusOK, newList(items, next))
}

func (s *server) getRule(w http.ResponseWriter, r *http.Request) error {
	e, name, err := s.ruleByName(r)
	if err != nil {
		return err
	}
	out, err := e.Get(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.ruleOut(r, e, out))
}

func (s *server) replaceRule(w http.ResponseWriter, r *http.Request) error {
	e, name, err := s.ruleByName(r)
	if err != nil {
		return err
	}
	var in ruleBody
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Name != "" && in.Name != name {
		return core.Invalid("name", "name %q in the body differs from %q in the path (rules cannot be renamed)", in.Name, name)
	}
	if in.SQL == "" {
		return core.Invalid("sql", "sql is required")
	}
	in.Name = name
	out, err := e.Update(r.Context(), in.rule())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.ruleOut(r, e, out))
}

func (s *server) patchRule(w http.ResponseWriter, r *http.Request) error {
	e, name, err := s.ruleByName(r)
	if err != nil {
		return err
	}
	var in rulePatch
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	out, err := e.Get(r.Context(), name)
	if err != nil {
		return err
	}
	if in.Description != nil {
		out.Description = *in.Description
		if in.Enabled != nil {
			out.Enabled = *in.Enabled
		}
		if out, err = e.Update(r.Context(), out); err != nil {
			return err
		}
	} else if in.Enabled != nil {
		if out, err = e.SetEnabled(r.Context(), name, *in.Enabled); err != nil {
			return err
		}
	}
	return writeJSON(w, http.StatusOK, s.ruleOut(r, e, out))
}

func (s *server) deleteRule(w http.ResponseWriter, r *http.Request) error {
	e, name, err := s.ruleByName(r)
	if err != nil {
		return err
	}
	if err := e.Delete(r.Context(), name); err != nil {
		return err
	}
	return noContent(w)
}

func (s *server) testRule(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	var in ruleTest
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.SQL == "" {
		return core.Invalid("sql", "sql is required")
	}
	payload := []byte(in.Payload)
	var str string
	if len(in.Payload) > 0 && in.Payload[0] == '"' && json.Unmarshal(in.Payload, &str) == nil {
		payload = []byte(str) // a string is the payload as is
	}
	props := make([]core.Property, 0, len(in.Properties))
	for _, k := range slices.Sorted(maps.Keys(in.Properties)) {
		props = append(props, core.Property{Key: k, Value: in.Properties[k]})
	}
	if len(in.Messages) > ruleengine.MaxTestMessages {
		return core.Invalid("messages", "%d messages; the limit is %d", len(in.Messages), ruleengine.MaxTestMessages)
	}
	msgs := make([]ruleengine.TestMessage, len(in.Messages))
	for i, m := range in.Messages {
		msgs[i] = ruleengine.TestMessage{Topic: m.Topic, Payload: rawPayload(m.Payload), ClientID: m.ClientID, Thing: m.Thing, At: m.At}
	}
	res, err := ruleengine.Test(ruleengine.TestInput{SQL: in.SQL, Topic: in.Topic, Payload: payload, ClientID: in.ClientID,
		Thing: in.Thing, Properties: props, Messages: msgs})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// ruleByName is the common start of the /rules/{name} handlers: the engine,
// the rule name from the path, and no query parameters.
func (s *server) ruleByName(r *http.Request) (*ruleengine.Engine, string, error) {
	e, err := s.ruleEngine()
	if err != nil {
		return nil, "", err
	}
	name, err := pathName(r, "name")
	if err != nil {
		return nil, "", err
	}
	if err := noParams(r); err != nil {
		return nil, "", err
	}
	return e, name, nil
}
