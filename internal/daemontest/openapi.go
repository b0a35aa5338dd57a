package daemontest

import (
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/moteiot/mote/internal/httpapi"
	"github.com/moteiot/mote/internal/httpapi/openapitest"
)

// Every REST API response of a Server started here that a test binary
// receives through http.DefaultTransport — http.Get, http.DefaultClient, an
// http.Client without a Transport, the API client of internal/apiclient
// and so the CLI — is checked against openapi.json
// (internal/httpapi/openapitest): the status must be documented for the
// operation, the content type listed, the body must match its schema, and
// no object may carry a field the document does not describe. A response
// that does not match makes the request fail with an error wrapping
// openapitest.ErrMismatch, and fails the test whose Server answered it
// when that test ends (also when the test ignored the error). Requests to
// other servers (a test's own stubs) and to undocumented paths pass
// untouched.
//
// The transport is installed when the package is initialized, before any
// test runs; the document is loaded on the first API response.
func init() {
	http.DefaultTransport = &apiTransport{base: http.DefaultTransport}
}

var (
	specOnce      sync.Once
	specValidator *openapitest.Validator
	specErr       error

	// mismatches holds the failures by the API host that answered them,
	// for Server's cleanup.
	mismatchMu sync.Mutex
	mismatches = map[string][]string{}

	// apiHosts are the host:port of the HTTP listeners of the Servers
	// started in this binary: only their answers are checked.
	apiHosts sync.Map
)

// watchAPI makes the transport check the answers of the server at host.
func watchAPI(host string) { apiHosts.Store(host, true) }

func validator() (*openapitest.Validator, error) {
	specOnce.Do(func() {
		specValidator, specErr = openapitest.Load(httpapi.OpenAPIDocument())
	})
	return specValidator, specErr
}

type apiTransport struct{ base http.RoundTripper }

func (t *apiTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, ok := apiHosts.Load(req.URL.Host); !ok {
		return t.base.RoundTrip(req)
	}
	v, err := validator()
	if err != nil {
		return nil, err
	}
	res, err := v.Transport(t.base).RoundTrip(req)
	if errors.Is(err, openapitest.ErrMismatch) {
		mismatchMu.Lock()
		mismatches[req.URL.Host] = append(mismatches[req.URL.Host], err.Error())
		mismatchMu.Unlock()
	}
	return res, err
}

// checkAPIResponses fails tb for every response of the server at host
// that did not match openapi.json, and forgets them.
func checkAPIResponses(tb testing.TB, host string) {
	tb.Helper()
	mismatchMu.Lock()
	f := mismatches[host]
	delete(mismatches, host)
	mismatchMu.Unlock()
	for _, m := range f {
		tb.Errorf("API response of %s: %s", host, m)
	}
}

// CheckedAPIResponses is the number of API responses checked against
// openapi.json in this test binary so far.
func CheckedAPIResponses() int {
	v, err := validator()
	if err != nil {
		return 0
	}
	return v.Checked()
}
