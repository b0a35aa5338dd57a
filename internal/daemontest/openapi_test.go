package daemontest

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/httpapi/openapitest"
)

// TestAPIResponsesChecked: a real server's answers through the default
// transport (plain http and the API client) are checked against
// openapi.json, and pass.
func TestAPIResponsesChecked(t *testing.T) {
	s := Start(t)
	before := CheckedAPIResponses()
	c := apiclient.New(s.API, s.Token)
	if _, err := c.CreateThing(t.Context(), apiclient.NewThing{Name: "t1"}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", s.API+"/api/v1/things/nope", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("GET a missing thing: %d", res.StatusCode)
	}
	if n := CheckedAPIResponses() - before; n < 2 {
		t.Fatalf("%d responses checked; want at least 2 (or the transport is not installed)", n)
	}
}

// recorder is a testing.TB that keeps what Errorf reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestAPIMismatchFails: an answer that breaks the document (an
// undocumented field, a wrong type) fails the request with ErrMismatch and
// is reported against the server that sent it; paths outside the API and
// a documented answer pass, and servers not started by daemontest are not
// checked.
func TestAPIMismatchFails(t *testing.T) {
	body := `{"name":"a","attributes":{},"tags":[],"groups":[],"policies":[],"enabled":true,"connected":false,"createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/things/good":
			io.WriteString(w, body)
		case "/api/v1/things/extra":
			io.WriteString(w, strings.Replace(body, `"name":"a"`, `"name":"a","hash":"x"`, 1))
		case "/api/v1/things/type":
			io.WriteString(w, strings.Replace(body, `"enabled":true`, `"enabled":"yes"`, 1))
		default: // not the API: anything goes
			io.WriteString(w, `{"whatever":1}`)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	// Not a daemontest server: nothing is checked.
	res, err := http.Get(srv.URL + "/api/v1/things/extra")
	if err != nil {
		t.Fatalf("a stub's answer was checked: %v", err)
	}
	res.Body.Close()
	watchAPI(host)
	for path, bad := range map[string]bool{"/api/v1/things/good": false, "/other/x": false, "/api/v1/things/extra": true, "/api/v1/things/type": true} {
		res, err := http.Get(srv.URL + path)
		if res != nil {
			res.Body.Close()
		}
		if bad != errors.Is(err, openapitest.ErrMismatch) {
			t.Errorf("GET %s: err = %v; want a mismatch: %v", path, err, bad)
		}
	}
	r := &recorder{TB: t}
	checkAPIResponses(r, host)
	if len(r.errs) != 2 || !strings.Contains(strings.Join(r.errs, "\n"), "hash") {
		t.Fatalf("reported %q; want the two bad answers, one naming the field hash", r.errs)
	}
	r.errs = nil
	checkAPIResponses(r, host)
	if len(r.errs) != 0 {
		t.Fatalf("reported again: %q", r.errs)
	}
}
