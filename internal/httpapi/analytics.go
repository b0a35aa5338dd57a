package httpapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/moteiot/mote/internal/analytics"
	"github.com/moteiot/mote/internal/core"
)

// Analytics rules (docs/alarms.md): the detectors that raise alarms from
// the live stream, per thing type or group.

// analyticsRuleBody is the body of POST /analytics/rules and PUT
// /analytics/rules/{name}.
type analyticsRuleBody struct {
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`
	ThingType string          `json:"thingType"`
	Group     string          `json:"group"`
	Config    json.RawMessage `json:"config"`
	Enabled   *bool           `json:"enabled"`
}

// analyticsRuleOut is an analytics rule in an answer.
type analyticsRuleOut struct {
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`
	ThingType string          `json:"thingType,omitempty"`
	Group     string          `json:"group,omitempty"`
	Config    json.RawMessage `json:"config"`
	Enabled   bool            `json:"enabled"`
	CreatedAt time.Time       `json:"createdAt"`
	UpdatedAt time.Time       `json:"updatedAt"`
}

func analyticsRuleWire(r analytics.Rule) analyticsRuleOut {
	return analyticsRuleOut{Name: r.Name, Kind: r.Kind, ThingType: r.ThingType, Group: r.Group, Config: r.Config,
		Enabled: r.Enabled, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

func (in analyticsRuleBody) rule() analytics.Rule {
	enabled := true
	if in.Enabled != nil {
		enabled = *in.Enabled
	}
	return analytics.Rule{Name: in.Name, Kind: in.Kind, ThingType: in.ThingType, Group: in.Group, Config: in.Config, Enabled: enabled}
}

func (s *server) analyticsEngine() (*analytics.Engine, error) {
	if s.analytics == nil {
		return nil, core.Errorf(core.KindUnavailable, "analytics are not enabled on this server")
	}
	return s.analytics, nil
}

func (s *server) createAnalyticsRule(w http.ResponseWriter, r *http.Request) error {
	e, err := s.analyticsEngine()
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	var in analyticsRuleBody
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	out, err := e.CreateRule(r.Context(), in.rule())
	if err != nil {
		return err
	}
	return created(w, "/analytics/rules/"+out.Name, analyticsRuleWire(out))
}

func (s *server) listAnalyticsRules(w http.ResponseWriter, r *http.Request) error {
	e, err := s.analyticsEngine()
	if err != nil {
		return err
	}
	after, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	list, next, err := pageAfter(after, limit, func(after string, n int) ([]analytics.Rule, error) {
		return e.ListRules(r.Context(), after, n)
	}, func(rl analytics.Rule) string { return rl.Name })
	if err != nil {
		return err
	}
	items := make([]analyticsRuleOut, len(list))
	for i, rl := range list {
		items[i] = analyticsRuleWire(rl)
	}
	return writeJSON(w, http.StatusOK, newList(items, next))
}

func (s *server) analyticsRuleByName(r *http.Request) (*analytics.Engine, string, error) {
	e, err := s.analyticsEngine()
	if err != nil {
		return nil, "", err
	}
	if err := noParams(r); err != nil {
		return nil, "", err
	}
	name, err := pathName(r, "name")
	return e, name, err
}

func (s *server) getAnalyticsRule(w http.ResponseWriter, r *http.Request) error {
	e, name, err := s.analyticsRuleByName(r)
	if err != nil {
		return err
	}
	out, err := e.GetRule(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, analyticsRuleWire(out))
}

// replaceAnalyticsRule is PUT /analytics/rules/{name}: the detectors of
// the rule start afresh.
func (s *server) replaceAnalyticsRule(w http.ResponseWriter, r *http.Request) error {
	e, name, err := s.analyticsRuleByName(r)
	if err != nil {
		return err
	}
	var in analyticsRuleBody
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Name != "" && in.Name != name {
		return core.Invalid("name", "name %q in the body differs from %q in the path (rules cannot be renamed)", in.Name, name)
	}
	in.Name = name
	out, err := e.UpdateRule(r.Context(), in.rule())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, analyticsRuleWire(out))
}

func (s *server) deleteAnalyticsRule(w http.ResponseWriter, r *http.Request) error {
	e, name, err := s.analyticsRuleByName(r)
	if err != nil {
		return err
	}
	if err := e.DeleteRule(r.Context(), name); err != nil {
		return err
	}
	return noContent(w)
}
