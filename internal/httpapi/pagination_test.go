package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/analytics"
	"github.com/moteiot/mote/internal/artifacts"
	"github.com/moteiot/mote/internal/commands"
	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/dashboards"
	"github.com/moteiot/mote/internal/httpapi"
	"github.com/moteiot/mote/internal/jobs"
	"github.com/moteiot/mote/internal/policy"
	"github.com/moteiot/mote/internal/provisioning"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/telemetry"
)

// notPaginated are the GET routes that are not lists taking limit and
// cursor; every other GET route must be in TestPaginationAtMaxLimit.
var notPaginated = map[string]string{
	"/ca.pem":                                     "a file",
	"/crl.pem":                                    "a file",
	"/openapi.json":                               "a document",
	"/server":                                     "one object",
	"/stats":                                      "one object",
	"/auth/me":                                    "one object",
	"/auth/oidc":                                  "one object",
	"/auth/oidc/login":                            "a redirect",
	"/auth/oidc/callback":                         "a redirect",
	"/events":                                     "a stream",
	"/things/{name}":                              "one object",
	"/things/{name}/credentials/{id}":             "one object",
	"/things/{name}/shadows/{shadow}":             "one object",
	"/types/{name}":                               "one object",
	"/groups/{name}":                              "one object",
	"/policies/{name}":                            "one object",
	"/rules/{name}":                               "one object",
	"/things/{name}/commands/{id}":                "one object",
	"/things/{name}/telemetry/latest":             "one point per key",
	"/devices/{thing}/shadows/{shadow}":           "one object",
	"/devices/{thing}/commands":                   "the pending commands, each delivered once (no cursor)",
	"/artifacts/{name}/{version}":                 "one object",
	"/artifacts/{name}/{version}/content":         "a file",
	"/artifacts/{name}/{version}/download":        "a file",
	"/devices/{thing}/artifacts/{name}/{version}": "a file",
	"/fleet/firmware":                             "one object (a count per version)",
	"/fleet/positions":                            "pages of up to 10,000: TestFleetPositions pages it, TestMapClusters10000 (test/console) reads a full one",
	"/devices/{thing}/files/{name}":               "one object",
	"/things/{name}/files":                        "a thing's files, at most --file-max-count (no cursor)",
	"/things/{name}/files/{file}":                 "one object",
	"/things/{name}/files/{file}/content":         "a file",
	"/alarms/{id}":                                "one object",
	"/analytics/rules/{name}":                     "one object",
	"/dashboards/{name}":                          "one object",
	"/stats/history":                              "the points of one window (at most 1440, no cursor)",
	"/jobs/{id}":                                  "one object",
	"/things/{name}/jobs":                         "the thing's executions, oldest first, up to limit (no cursor)",
	"/devices/{thing}/jobs":                       "the AWS pending-executions answer (no cursor)",
	"/devices/{thing}/jobs/{jobId}":               "one execution",
	// The CoAP PSK of a credential (coappsk.go).
	"/things/{name}/credentials/{id}/psk": "one object",
	"/things:count":                       "one number",
	"/users/{name}":                       "one object",
	// Provisioning (provisioning.go).
	"/enrollments/{name}":                   "one object",
	"/enrollments/{name}/verification-code": "one object",
	"/claims/{id}":                          "one object",
	"/claims/{id}/qr.png":                   "an image",
	"/audit/export":                         "a stream of every matching entry (no cursor)",
	"/profiles/{name}":                      "one object",
	"/things/{name}/profiles":               "the profiles applied to a thing, at most --max-profiles (no cursor)",
	// Counts with a page of the non-compliant things; its paging is
	// tested in internal/profiles (TestCompliancePages).
	"/profiles/{name}/compliance": "counts and a page",
}

// TestPaginationAtMaxLimit: every paginated route, asked for its largest
// page with more items than fit, answers a full page and a nextCursor,
// and following the cursors returns every item exactly once.
func TestPaginationAtMaxLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds over 10,000 rows")
	}
	if raceEnabled {
		// It checks cursors, not concurrency: .ci/run runs it without
		// the race detector, under which seeding its 25,000 rows takes
		// 90 s instead of 15.
		t.Skip("seeds over 25,000 rows: run without -race (as .ci/run does)")
	}
	// More dashboards than the default --max-dashboards (1000) allows.
	s := daemontest.Start(t, func(c *config.Config) { c.MaxDashboards = 2000 })
	ctx := context.Background()
	const n = 1001 // one more than the largest page
	s.Thing(t, "host")
	reg := s.Registry()
	if _, err := reg.CreateGroup(ctx, store.Group{Name: "members"}); err != nil {
		t.Fatal(err)
	}

	name := func(p string, i int) string { return fmt.Sprintf("%s%04d", p, i) }
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("seed %s: %v", what, err)
		}
	}
	var doc policy.Document
	must("policy document", json.Unmarshal([]byte(`{"statements":[{"effect":"allow","actions":["publish"],"topics":["a"]}]}`), &doc))
	byName := func(m map[string]any) string { s, _ := m["name"].(string); return s }
	byID := func(m map[string]any) string { s, _ := m["id"].(string); return s }
	byPoint := func(m map[string]any) string { return fmt.Sprint(m["key"], "@", m["ts"]) }
	byJobID := func(m map[string]any) string { s, _ := m["jobId"].(string); return s }
	byThingName := func(m map[string]any) string { s, _ := m["thingName"].(string); return s }

	tests := []struct {
		route string // the route table's path
		path  string // what is requested
		max   int
		key   func(map[string]any) string
		seed  func(i int) error
	}{
		{"/things", "/things", 1000, byName, func(i int) error {
			_, err := reg.CreateThing(ctx, store.Thing{Name: name("t", i), Enabled: true})
			return err
		}},
		{"/things/{name}/credentials", "/things/host/credentials", 1000, byID, func(int) error {
			_, err := reg.CreateSecret(ctx, "host", nil)
			return err
		}},
		{"/things/{name}/shadows", "/things/host/shadows", 1000, byName, func(i int) error {
			_, err := s.Shadows().Update(ctx, "host", name("s", i), []byte(`{"state":{"reported":{"a":1}}}`))
			return err
		}},
		{"/types", "/types", 1000, byName, func(i int) error {
			_, err := reg.CreateType(ctx, store.ThingType{Name: name("ty", i)})
			return err
		}},
		{"/groups", "/groups", 1000, byName, func(i int) error {
			_, err := reg.CreateGroup(ctx, store.Group{Name: name("g", i)})
			return err
		}},
		{"/policies", "/policies", 1000, byName, func(i int) error {
			_, err := reg.CreatePolicy(ctx, name("p", i), "", doc)
			return err
		}},
		{"/rules", "/rules", 1000, byName, func(i int) error {
			_, err := s.Rules().Create(ctx, store.Rule{Name: name("r", i), SQL: "SELECT * FROM 'x/y'", Actions: json.RawMessage(`[{"type":"republish","topic":"z"}]`)})
			return err
		}},
		{"/things/{name}/commands", "/things/host/commands", 1000, byID, func(i int) error {
			_, err := s.Commands().Create(ctx, "host", commands.Request{Name: "c"})
			return err
		}},
		{"/artifacts", "/artifacts", 1000, byName, func(i int) error {
			_, err := s.Artifacts().Create(ctx, artifacts.Upload{Name: name("a", i), Version: "1"}, strings.NewReader("x"))
			return err
		}},
		{"/jobs", "/jobs", 1000, byJobID, func(i int) error {
			_, err := s.Jobs().Create(ctx, jobs.Spec{JobID: name("j", i), Targets: jobs.Targets{Things: []string{"host"}}, Document: json.RawMessage(`{}`)})
			return err
		}},
		{"/jobs/{id}/executions", "/jobs/all/executions", 1000, byThingName, nil}, // seeded below
		{"/groups/{name}/things", "/groups/members/things", 1000, byName, func(i int) error {
			_, err := reg.CreateThing(ctx, store.Thing{Name: name("m", i), Enabled: true, Groups: []string{"members"}})
			return err
		}},
		{"/profiles", "/profiles", 1000, byName, func(i int) error {
			// Through the store: --max-profiles (100) bounds the API.
			_, err := reg.Store().Profiles().Create(ctx, store.Profile{Name: name("pr", i), Desired: []byte(`{"a":1}`), Query: "name = 'none'"})
			return err
		}},
		{"/tokens", "/tokens", 1000, byID, func(i int) error {
			_, _, err := reg.CreateToken(ctx, name("tok", i), "viewer", nil)
			return err
		}},
		{"/users", "/users", 1000, byName, func(i int) error {
			_, err := s.Store().Users().Create(ctx, store.User{Name: name("u", i), PasswordHash: []byte("not bcrypt"), Role: "viewer"})
			return err
		}},
		{"/alarms", "/alarms", 1000, byID, func(i int) error {
			_, err := s.Alarms().Raise(ctx, "host", name("a", i), "minor", nil)
			return err
		}},
		{"/analytics/rules", "/analytics/rules", 1000, byName, func(i int) error {
			_, err := s.Analytics().CreateRule(ctx, analytics.Rule{Name: name("ar", i), Kind: "silence", Config: json.RawMessage(`{"expectedInterval":"1m"}`)})
			return err
		}},
		{"/enrollments", "/enrollments", 1000, byName, func(i int) error {
			// Through the store: more groups than --provisioning-max-enrollments.
			_, err := reg.Store().Provisioning().CreateEnrollment(ctx, store.Enrollment{Name: name("e", i), Attestation: store.AttestationSymmetricKey, Enabled: true})
			return err
		}},
		{"/claims", "/claims", 1000, byID, func(i int) error {
			_, _, err := s.Provisioning().CreateClaim(ctx, provisioning.NewClaim{Thing: name("k", i)})
			return err
		}},
		{"/audit", "/audit", 1000, byID, func(i int) error {
			return s.Audit().Record(ctx, store.AuditEntry{ActorKind: "system", ActorName: "seed", Action: "x.create", TargetKind: "x", TargetName: name("au", i)})
		}},
		{"/dashboards", "/dashboards", 1000, byName, func(i int) error {
			_, err := s.Dashboards().Create(ctx, dashboards.Document{Name: name("d", i)})
			return err
		}},
		{"/things/{name}/telemetry", "/things/host/telemetry?from=0&to=" + strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10), telemetry.MaxLimit, byPoint, nil},
		{"/telemetry", "/telemetry?things=host&from=0&to=" + strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10), telemetry.MaxLimit, byPoint, nil},
	}

	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.route] = true
	}
	for _, p := range httpapi.GETRoutes() {
		if !covered[p] && notPaginated[p] == "" {
			t.Errorf("GET %s is in the route table but neither tested here nor listed in notPaginated", p)
		}
	}

	// Telemetry: more points than its largest page.
	pts := make([]telemetry.Point, telemetry.MaxLimit+1)
	base := time.Now().Add(-time.Hour).UnixMilli()
	for i := range pts {
		pts[i] = telemetry.Point{Thing: "host", Key: "k", TS: base + int64(i), Value: telemetry.Number(float64(i))}
	}
	must("telemetry", s.Telemetry().Append(ctx, pts, 0))

	// A job with more executions than its largest page.
	var targets []string
	for i := range n {
		must("job target", func() error {
			_, err := reg.CreateThing(ctx, store.Thing{Name: name("e", i), Enabled: true})
			return err
		}())
		targets = append(targets, name("e", i))
	}
	_, err := s.Jobs().Create(ctx, jobs.Spec{JobID: "all", Targets: jobs.Targets{Things: targets}, Document: json.RawMessage(`{}`)})
	must("job", err)

	for _, tt := range tests {
		t.Run(tt.route, func(t *testing.T) {
			before := readAll(t, s, tt.path, tt.max, tt.key) // what exists already (bootstrap)
			if tt.seed != nil {
				for i := range n {
					if err := tt.seed(i); err != nil {
						t.Fatalf("seed %d: %v", i, err)
					}
				}
			}
			want := len(before) + n
			if tt.seed == nil {
				want = len(before)
			}
			first, next := getPage(t, s, tt.path, tt.max, "")
			if len(first) != tt.max || next == "" {
				t.Fatalf("GET %s limit=%d with %d items: %d items, nextCursor %q; want a full page and a nextCursor", tt.path, tt.max, want, len(first), next)
			}
			all := readAll(t, s, tt.path, tt.max, tt.key)
			if len(all) != want {
				t.Errorf("following nextCursor from GET %s gave %d distinct items; want %d", tt.path, len(all), want)
			}
			for k := range before {
				if !all[k] {
					t.Errorf("item %s is missing from the pages", k)
				}
			}
		})
	}
}

// getPage gets one page of a list.
func getPage(t *testing.T, s *daemontest.Server, path string, limit int, cursor string) ([]map[string]any, string) {
	t.Helper()
	u, err := url.Parse(s.API + httpapi.BasePath + path)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("limit", strconv.Itoa(limit))
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	u.RawQuery = q.Encode()
	req, _ := http.NewRequest("GET", u.String(), nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var page struct {
		Items      []map[string]any `json:"items"`
		NextCursor string           `json:"nextCursor"`
	}
	if err := json.NewDecoder(res.Body).Decode(&page); err != nil || res.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", u, res.StatusCode, err)
	}
	return page.Items, page.NextCursor
}

// readAll follows nextCursor to the end and returns the items' keys,
// failing on a duplicate.
func readAll(t *testing.T, s *daemontest.Server, path string, limit int, key func(map[string]any) string) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatalf("GET %s: more than 100 pages; a cursor loops", path)
		}
		items, next := getPage(t, s, path, limit, cursor)
		for _, it := range items {
			k := key(it)
			if k == "" {
				t.Fatalf("GET %s: an item without a key: %v", path, it)
			}
			if seen[k] {
				t.Fatalf("GET %s: item %s on two pages", path, k)
			}
			seen[k] = true
		}
		if next == "" {
			return seen
		}
		cursor = next
	}
}
