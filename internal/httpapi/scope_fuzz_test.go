package httpapi

import (
	"testing"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/fleetquery"
)

// FuzzScopedFilters: the plain filters of GET /things, written as a fleet
// query for a scoped principal (filtersQuery), always make a query that
// parses, and one that selects what the filter says: any text given is
// quoted, never read as query syntax.
func FuzzScopedFilters(f *testing.F) {
	f.Add("ams-", "thermo", "plant-3", "site", "ams")
	f.Add("a'b", "x') OR (name != '", "g", "serial no", "it's")
	f.Add("", "", "", `we"ird`, `"`)
	f.Add("x*", "", "", "1st", "")
	f.Fuzz(func(t *testing.T, prefix, typ, group, key, val string) {
		q := query{vals: map[string]string{}, prefixed: map[string]string{}}
		for k, v := range map[string]string{"prefix": prefix, "type": typ, "group": group} {
			if v != "" {
				q.vals[k] = v
			}
		}
		if key != "" {
			q.prefixed[key] = val
		}
		fq, err := filtersQuery(q)
		if err != nil {
			if core.KindOf(err) != core.KindInvalid {
				t.Fatalf("filtersQuery: %v; want a 400 or a query", err)
			}
			return
		}
		if fq == "" {
			return
		}
		composed := "(" + fq + ") AND (groups IN ('plant-3'))"
		if _, err := fleetquery.Parse(composed, fleetquery.Limits{MaxLength: 1 << 20}); err != nil {
			t.Fatalf("filters %q → %q does not parse: %v", q, composed, err)
		}
	})
}
