package httpapi

import (
	"cmp"
	"net/http"
	"slices"
	"time"
)

// stats is the body of GET /stats: the counts an overview shows, in one
// request.
//
// A principal scoped to groups gets its things' counts only, scoped:
// true, and neither rules nor messages: rules are fleet-wide (a scoped
// principal may not read them) and the broker's rates cannot be split by
// thing.
type stats struct {
	Things   thingCounts   `json:"things"`
	Rules    *ruleCounts   `json:"rules,omitempty"`
	Messages *messageRates `json:"messages,omitempty"`
	Scoped   bool          `json:"scoped,omitempty"`
}

type thingCounts struct {
	Total     int `json:"total"`
	Connected int `json:"connected"`
	Disabled  int `json:"disabled"`
}

type ruleCounts struct {
	Total   int           `json:"total"`
	Enabled int           `json:"enabled"`
	Failing []failingRule `json:"failing"` // rules with errors since the server started, most errors first
	Matched uint64        `json:"matched"` // of every rule
	Errors  uint64        `json:"errors"`
}

type failingRule struct {
	Name    string `json:"name"`
	Errors  uint64 `json:"errors"`
	Matched uint64 `json:"matched"`
}

type messageRates struct {
	InPerSecond  float64    `json:"inPerSecond"`
	OutPerSecond float64    `json:"outPerSecond"`
	Connections  int64      `json:"connections"`
	Time         *time.Time `json:"time,omitempty"` // of the sample (once a second)
}

// maxStatsRules bounds the rules GET /stats reads.
const maxStatsRules = 10_000

func (s *server) getStats(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	if sc := scopeFrom(r.Context()); sc != nil {
		return s.getScopedStats(w, r, sc)
	}
	c, err := s.reg.ThingCounts(r.Context())
	if err != nil {
		return err
	}
	out := stats{Things: thingCounts{Total: c.Total, Connected: c.Connected, Disabled: c.Disabled}, Rules: &ruleCounts{Failing: []failingRule{}}}
	if e := s.rules; e != nil {
		after := ""
		for out.Rules.Total < maxStatsRules {
			page, err := e.List(r.Context(), after, 1000)
			if err != nil {
				return err
			}
			for _, rl := range page {
				out.Rules.Total++
				if rl.Enabled {
					out.Rules.Enabled++
				}
				m, errs := e.Counters(rl.Name)
				out.Rules.Matched += m
				out.Rules.Errors += errs
				if errs > 0 {
					out.Rules.Failing = append(out.Rules.Failing, failingRule{Name: rl.Name, Errors: errs, Matched: m})
				}
			}
			if len(page) < 1000 {
				break
			}
			after = page[len(page)-1].Name
		}
		slices.SortStableFunc(out.Rules.Failing, func(a, b failingRule) int { return cmp.Compare(b.Errors, a.Errors) })
	}
	out.Messages = &messageRates{}
	if s.live != nil {
		st := s.live.Stats()
		out.Messages = &messageRates{InPerSecond: st.MessagesIn, OutPerSecond: st.MessagesOut, Connections: st.Connected}
		if !st.Time.IsZero() {
			out.Messages.Time = &st.Time
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// getScopedStats answers GET /stats for a principal scoped to groups: the
// counts of the things in its scope, by the fleet index (as GET
// /things:count narrows a query).
func (s *server) getScopedStats(w http.ResponseWriter, r *http.Request, sc *scope) error {
	count := func(fq string) (int, error) {
		q, err := s.andScope(r.Context(), sc, fq)
		if err != nil {
			return 0, err
		}
		n, err := s.fleet.Count(r.Context(), q)
		return int(n), err
	}
	var out stats
	var err error
	if out.Things.Total, err = count(""); err != nil {
		return err
	}
	if out.Things.Connected, err = count("connected = true"); err != nil {
		return err
	}
	if out.Things.Disabled, err = count("enabled = false"); err != nil {
		return err
	}
	out.Scoped = true
	return writeJSON(w, http.StatusOK, out)
}
