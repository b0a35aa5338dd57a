// Package openapitest checks HTTP responses against an OpenAPI 3.1
// description with kin-openapi: the status code must be documented for
// the operation, the Content-Type must be one the operation lists for that
// status, and the body must match its schema.
//
// It is meant for tests only: httpapi's tests wrap every handler they build
// with Validator.Handler, and tests that talk to a whole daemon can use
// Validator.Transport on their HTTP client. The spec is loaded, validated
// and routed once (Load); checking a response costs a JSON decode and a
// schema walk.
package openapitest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

func init() {
	// Media types kin-openapi has no decoder for: the body is checked as
	// a string (its schema is {"type": "string"}) or as opaque bytes.
	openapi3filter.RegisterBodyDecoder("application/x-pem-file", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("image/png", openapi3filter.FileBodyDecoder)
	// Downloads documented as */* (files, artifacts) come back with the
	// content type they were uploaded with: opaque bytes. kin-openapi uses
	// this decoder only for a type it has none for, after the type was
	// matched against the document.
	openapi3filter.RegisterBodyDecoder("*/*", openapi3filter.FileBodyDecoder)
}

// Validator checks responses against one OpenAPI document.
type Validator struct {
	doc    *openapi3.T
	router routers.Router

	mu       sync.Mutex
	failures []string
	checked  int
}

// Load parses spec, validates it as an OpenAPI document and builds the
// router that maps a request to its operation.
func Load(spec []byte) (*Validator, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("openapitest: load: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapitest: the document is not valid OpenAPI: %w", err)
	}
	closeObjects(doc)
	// Check bodies with kin-openapi's own schema validator rather than its
	// JSON Schema 2020-12 one, which compiles the schema again for every
	// response (about 6 ms each, 35 ms for a page of 100 things). The
	// keywords openapi.json uses (type lists included) mean the same to
	// both; TestOpenAPIValidatorCatchesWrongResponses keeps that honest.
	doc.OpenAPI = "3.0.3"
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapitest: router: %w", err)
	}
	return &Validator{doc: doc, router: router}, nil
}

// ErrUnrouted is returned by Check for a request that matches no
// documented operation (an unknown path or method). Such requests are
// answered 404 or 405 by the server, which the document cannot describe
// per path; Check does not treat them as failures.
var ErrUnrouted = errors.New("openapitest: the request matches no documented operation")

// Check validates one response to req. body is the whole body; if
// streamed is true only the status and the content type are checked (the
// body is a stream that never ends in a test, e.g. text/event-stream).
func (v *Validator) Check(req *http.Request, status int, header http.Header, body []byte, streamed bool) error {
	// gorillamux matches on the path below the server URL ("/api/v1").
	r := req.Clone(context.Background())
	if r.URL.Host == "" {
		r.URL.Host = req.Host
	}
	route, params, err := v.router.FindRoute(r)
	if err != nil {
		return ErrUnrouted
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request:    r,
			PathParams: params,
			Route:      route,
		},
		Status: status,
		Header: header,
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			ExcludeResponseBody:   streamed,
			MultiError:            true,
		},
	}
	in.SetBodyBytes(body)
	if streamed {
		if err := v.checkContentType(route, status, header); err != nil {
			return err
		}
	}
	if status == http.StatusNoContent && len(body) != 0 {
		return fmt.Errorf("%s %s: 204 with a %d-byte body", req.Method, route.Path, len(body))
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("%s %s (%s) -> %d %s: %w", req.Method, req.URL.Path, route.Path, status, header.Get("Content-Type"), err)
	}
	v.mu.Lock()
	v.checked++
	v.mu.Unlock()
	return nil
}

// checkContentType is the part of ValidateResponse that a streamed
// response can be held to: its content type is one documented for the
// status.
func (v *Validator) checkContentType(route *routers.Route, status int, header http.Header) error {
	resp := route.Operation.Responses.Status(status)
	if resp == nil {
		resp = route.Operation.Responses.Default()
	}
	if resp == nil || resp.Value == nil {
		return fmt.Errorf("%s %s: status %d is not documented", route.Method, route.Path, status)
	}
	if len(resp.Value.Content) == 0 {
		return nil
	}
	if resp.Value.Content.Get(header.Get("Content-Type")) == nil {
		return fmt.Errorf("%s %s: %d with undocumented content type %q", route.Method, route.Path, status, header.Get("Content-Type"))
	}
	return nil
}

// Checked is the number of responses that passed validation so far: a
// test run that checked none proved nothing.
func (v *Validator) Checked() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.checked
}

// Failures returns every failure recorded by Handler and Transport.
func (v *Validator) Failures() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.failures...)
}

func (v *Validator) fail(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.failures = append(v.failures, err.Error())
}

// StatusInvalid is the status a wrapped handler answers with in place of a
// response that does not match the document, so that the test that made
// the request fails where it looks at the status, with the reason as the
// body. The failure is also recorded (Failures) for a test that does not.
const StatusInvalid = 599

// Handler wraps h: each response is buffered, checked, and then sent as
// is, or replaced by a StatusInvalid text response naming what is wrong.
// A handler that flushes (a stream) is checked by status and content type
// at its first flush and passes through from then on; one that hijacks
// the connection is not checked.
func (v *Validator) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bw := &bufferedWriter{w: w, v: v, r: r, header: http.Header{}}
		h.ServeHTTP(bw, r)
		bw.finish()
	})
}

// bufferedWriter holds a response until the handler returns (or flushes).
type bufferedWriter struct {
	w      http.ResponseWriter
	v      *Validator
	r      *http.Request
	header http.Header
	status int
	body   bytes.Buffer

	streaming bool // flushed: everything goes straight to w
	hijacked  bool
}

func (b *bufferedWriter) Header() http.Header {
	if b.streaming {
		return b.w.Header()
	}
	return b.header
}

func (b *bufferedWriter) WriteHeader(code int) {
	if b.streaming {
		b.w.WriteHeader(code)
		return
	}
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.streaming {
		return b.w.Write(p)
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	if b.header.Get("Content-Type") == "" && b.body.Len() == 0 {
		b.header.Set("Content-Type", http.DetectContentType(p))
	}
	return b.body.Write(p)
}

// FlushError turns the response into a stream: status and content type
// are checked now, and the rest passes through.
func (b *bufferedWriter) FlushError() error {
	if !b.streaming {
		if b.status == 0 {
			b.status = http.StatusOK
		}
		b.streaming = true
		b.send(true)
	}
	return http.NewResponseController(b.w).Flush()
}

func (b *bufferedWriter) SetReadDeadline(t time.Time) error {
	return http.NewResponseController(b.w).SetReadDeadline(t)
}

func (b *bufferedWriter) SetWriteDeadline(t time.Time) error {
	return http.NewResponseController(b.w).SetWriteDeadline(t)
}

func (b *bufferedWriter) EnableFullDuplex() error {
	return http.NewResponseController(b.w).EnableFullDuplex()
}

func (b *bufferedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	b.hijacked = true
	return http.NewResponseController(b.w).Hijack()
}

func (b *bufferedWriter) finish() {
	if b.streaming || b.hijacked {
		return
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	b.send(false)
}

// send checks what has been buffered and writes it (or the failure) to w.
func (b *bufferedWriter) send(streamed bool) {
	err := b.v.Check(b.r, b.status, b.header, b.body.Bytes(), streamed)
	if errors.Is(err, ErrUnrouted) {
		err = nil
	}
	if err != nil && !streamed {
		b.v.fail(err)
		h := b.w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		b.w.WriteHeader(StatusInvalid)
		io.WriteString(b.w, "response does not match openapi.json: "+err.Error()+"\n\noriginal response: "+fmt.Sprint(b.status)+" "+truncate(b.body.String(), 2000))
		return
	}
	if err != nil {
		b.v.fail(err)
	}
	h := b.w.Header()
	for k, vs := range b.header {
		h[k] = vs
	}
	b.w.WriteHeader(b.status)
	if b.body.Len() > 0 && b.r.Method != http.MethodHead {
		b.w.Write(b.body.Bytes())
	}
	b.body.Reset()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Transport returns an http.RoundTripper that checks every response it
// receives (base nil means http.DefaultTransport). A response that does
// not match is returned as an error from RoundTrip that wraps ErrMismatch
// and names what is wrong. A request that matches no documented operation
// and a 101 answer pass through unread. Streams (text/event-stream, application/x-ndjson) are checked by status
// and content type only.
func (v *Validator) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{v: v, base: base}
}

type transport struct {
	v    *Validator
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.base.RoundTrip(req)
	if err != nil {
		return res, err
	}
	// Requests to anything but a documented operation (another server's
	// paths, an unknown path) and protocol switches pass untouched: their
	// bodies are not read.
	if res.StatusCode == http.StatusSwitchingProtocols || !t.v.routed(req) {
		return res, nil
	}
	ct := res.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "text/event-stream") || strings.HasPrefix(ct, "application/x-ndjson") {
		if err := t.v.Check(req, res.StatusCode, res.Header, nil, true); err != nil && !errors.Is(err, ErrUnrouted) {
			res.Body.Close()
			t.v.fail(err)
			return nil, fmt.Errorf("%w: %w", ErrMismatch, err)
		}
		return res, nil
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	if err := t.v.Check(req, res.StatusCode, res.Header, body, false); err != nil && !errors.Is(err, ErrUnrouted) {
		t.v.fail(err)
		return nil, fmt.Errorf("%w: %w", ErrMismatch, err)
	}
	return res, nil
}

// ErrMismatch wraps the error Transport's RoundTrip returns for a
// response that does not match the document.
var ErrMismatch = errors.New("response does not match openapi.json")

// routed reports whether req is a request for a documented operation.
func (v *Validator) routed(req *http.Request) bool {
	r := req.Clone(context.Background())
	if r.URL.Host == "" {
		r.URL.Host = req.Host
	}
	_, _, err := v.router.FindRoute(r)
	return err == nil
}

// Flush is FlushError for callers that use http.Flusher.
func (b *bufferedWriter) Flush() { _ = b.FlushError() }

// Fork returns a Validator on the same document with its own count of
// checks and failures (for a test that provokes failures on purpose).
func (v *Validator) Fork() *Validator {
	return &Validator{doc: v.doc, router: v.router}
}

// closeObjects makes every object schema a response can hold closed
// (additionalProperties: false) where the document leaves it open and
// lists properties, so that a field the server sends but the document
// does not describe fails validation. Schemas that take part in an allOf
// stay open: each branch sees only its own properties.
func closeObjects(doc *openapi3.T) {
	inAllOf := map[*openapi3.Schema]bool{}
	seen := map[*openapi3.Schema]bool{}
	var walk func(ref *openapi3.SchemaRef, open bool)
	walk = func(ref *openapi3.SchemaRef, open bool) {
		if ref == nil || ref.Value == nil {
			return
		}
		s := ref.Value
		if open {
			inAllOf[s] = true
		}
		if seen[s] {
			return
		}
		seen[s] = true
		for _, a := range s.AllOf {
			walk(a, true)
		}
		for _, p := range s.Properties {
			walk(p, false)
		}
		walk(s.Items, false)
		walk(s.AdditionalProperties.Schema, false)
		for _, o := range s.OneOf {
			walk(o, false)
		}
		for _, o := range s.AnyOf {
			walk(o, false)
		}
	}
	var roots []*openapi3.SchemaRef
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if op.Responses == nil {
				continue
			}
			for _, r := range op.Responses.Map() {
				if r.Value == nil {
					continue
				}
				for _, mt := range r.Value.Content {
					roots = append(roots, mt.Schema)
				}
			}
		}
	}
	for _, r := range roots {
		walk(r, false)
	}
	// In OpenAPI 3.1 a schema without a type ({} or only a description)
	// accepts any value, null included; kin-openapi's 3.0 validator needs
	// nullable for null (Load validates as 3.0.3, see there).
	for s := range seen {
		if (s.Type == nil || len(*s.Type) == 0) && len(s.OneOf)+len(s.AnyOf)+len(s.AllOf) == 0 && s.Not == nil {
			s.Nullable = true
		}
	}
	no := false
	for s := range seen {
		if inAllOf[s] || len(s.AllOf) > 0 || len(s.Properties) == 0 {
			continue
		}
		if s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			s.AdditionalProperties.Has = &no
		}
	}
}
