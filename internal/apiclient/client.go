// Package apiclient is a typed Go client of Mote's REST API (docs/api.md).
// The CLI and the device simulator use it.
//
// Every method takes a context. A non-2xx answer is returned as *Error
// (the decoded application/problem+json); a request that never got an
// answer is returned as *UnreachableError.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// APIPath is the base path of the REST API.
const APIPath = "/api/v1"

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 1 << 20

// Client talks to one Mote server. Its fields may be changed before use;
// it is safe for concurrent use afterwards.
type Client struct {
	// BaseURL is the server's root, e.g. "http://127.0.0.1:8080", without
	// the /api/v1 path.
	BaseURL string
	// Token is the API token sent as "Authorization: Bearer <Token>"; empty
	// sends no Authorization header.
	Token string
	// HTTP is the HTTP client used; nil means http.DefaultClient.
	HTTP *http.Client
	// UserAgent is sent with every request when set.
	UserAgent string
}

// New returns a client of the server at baseURL (like
// "http://127.0.0.1:8080") that authenticates with token.
func New(baseURL, token string) *Client {
	return &Client{
		BaseURL:   strings.TrimRight(baseURL, "/"),
		Token:     token,
		HTTP:      &http.Client{Timeout: 60 * time.Second},
		UserAgent: "mote-apiclient",
	}
}

// Error is a non-2xx answer of the API: the decoded problem document
// (RFC 9457). Every method returns it as the error for such answers.
type Error struct {
	Status  int    `json:"status"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Detail  string `json:"detail"`
	Field   string `json:"field,omitempty"`
	ErrorID string `json:"errorId,omitempty"`

	// Method and URL are the request that failed.
	Method string `json:"-"`
	URL    string `json:"-"`
}

// Error returns the detail (or title) of the problem, the field it is
// about and, for server errors, the error id to look up in the server log.
func (e *Error) Error() string {
	s := e.Detail
	if s == "" {
		s = e.Title
	}
	if s == "" {
		s = fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Field != "" {
		s += " (field: " + e.Field + ")"
	}
	if e.ErrorID != "" && !strings.Contains(s, e.ErrorID) {
		s += " (error id: " + e.ErrorID + ")"
	}
	return s
}

// Kind maps the HTTP status to a core.Kind.
func (e *Error) Kind() core.Kind {
	switch e.Status {
	case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType,
		http.StatusUnprocessableEntity:
		return core.KindInvalid
	case http.StatusUnauthorized:
		return core.KindUnauthorized
	case http.StatusForbidden:
		return core.KindForbidden
	case http.StatusNotFound, http.StatusGone:
		return core.KindNotFound
	case http.StatusConflict, http.StatusPreconditionFailed:
		return core.KindConflict
	case http.StatusRequestEntityTooLarge:
		return core.KindTooLarge
	case http.StatusTooManyRequests:
		return core.KindRateLimited
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return core.KindUnavailable
	case http.StatusInsufficientStorage:
		if strings.HasSuffix(e.Type, "/quota_exceeded") {
			return core.KindQuota
		}
		return core.KindInsufficientStorage
	}
	if e.Status >= 400 && e.Status < 500 {
		return core.KindInvalid
	}
	return core.KindInternal
}

// KindOf returns the kind of an API error: e.Kind() for an *Error in err's
// chain, KindUnavailable for an *UnreachableError, else core.KindOf(err).
func KindOf(err error) core.Kind {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Kind()
	}
	var ue *UnreachableError
	if errors.As(err, &ue) {
		return core.KindUnavailable
	}
	return core.KindOf(err)
}

// IsNotFound reports whether err is an API answer 404.
func IsNotFound(err error) bool {
	var ae *Error
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// UnreachableError is a request that got no HTTP answer: the server could
// not be reached (connection refused, DNS, TLS, timeout...).
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("could not reach the Mote server at %s: %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// IsUnreachable reports whether err says the server could not be reached.
func IsUnreachable(err error) bool {
	var ue *UnreachableError
	return errors.As(err, &ue)
}

// request is one API call.
type request struct {
	method string
	path   string     // below APIPath, already escaped
	query  url.Values // may be nil
	body   any        // marshalled as JSON when non-nil
	accept string     // default application/json
	// raw, when non-nil, is sent as the body as it is (streamed), with
	// Content-Type rawType.
	raw     io.Reader
	rawType string
	header  http.Header // more request headers (If-Match)
	// also is a non-2xx status whose answer is decoded like a 2xx one
	// (0: none).
	also int
}

// do sends r and decodes a 2xx JSON answer into out (when out is non-nil
// and the answer has a body).
func (c *Client) do(ctx context.Context, r request, out any) error {
	resp, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", r.method, resp.Request.URL, err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", r.method, resp.Request.URL, err)
	}
	return nil
}

// send sends r and returns the answer if it is 2xx; any other answer is
// turned into an *Error.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	u := strings.TrimRight(c.BaseURL, "/") + APIPath + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	var body io.Reader
	if r.body != nil {
		data, err := json.Marshal(r.body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", r.method, u, err)
		}
		body = bytes.NewReader(data)
	}
	if r.raw != nil {
		body = r.raw
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return nil, fmt.Errorf("bad server URL %q: %w", c.BaseURL, err)
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.raw != nil && r.rawType != "" {
		req.Header.Set("Content-Type", r.rawType)
	}
	accept := r.accept
	if accept == "" {
		accept = "application/json"
	}
	req.Header.Set("Accept", accept+", application/problem+json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			// Cancelled or timed out by the caller: not the server's fault.
			return nil, fmt.Errorf("%s %s: %w", r.method, u, ctx.Err())
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &UnreachableError{URL: c.BaseURL, Err: err}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 || r.also != 0 && resp.StatusCode == r.also {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, decodeError(r.method, u, resp)
}

// decodeError turns a non-2xx answer into an *Error. A body that is not a
// problem document (a proxy's HTML page, say) becomes the detail, shortened.
func decodeError(method, u string, resp *http.Response) *Error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	decoded := false
	if mt == "application/problem+json" || mt == "application/json" {
		decoded = json.Unmarshal(data, e) == nil
	}
	e.Status = resp.StatusCode // the status line wins over the body
	e.Method, e.URL = method, u
	if !decoded {
		if s := strings.TrimSpace(string(data)); s != "" && len(s) <= 200 && !strings.ContainsAny(s, "<\n") {
			e.Detail = s
		}
	}
	if e.Detail == "" && e.Title == "" {
		e.Title = fmt.Sprintf("%s %s: %d %s", method, u, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return e
}

// seg escapes one path segment.
func seg(s string) string { return url.PathEscape(s) }

// Page is one page of a list.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"nextCursor,omitempty"`
}

// ListOptions page through a list: Limit 1..1000 (0 = server default
// 100), Cursor = the NextCursor of the previous page.
type ListOptions struct {
	Limit  int
	Cursor string
}

func (o ListOptions) values() url.Values {
	v := url.Values{}
	if o.Limit != 0 {
		v.Set("limit", fmt.Sprint(o.Limit))
	}
	if o.Cursor != "" {
		v.Set("cursor", o.Cursor)
	}
	return v
}

func list[T any](ctx context.Context, c *Client, path string, q url.Values) ([]T, string, error) {
	var p Page[T]
	if err := c.do(ctx, request{method: http.MethodGet, path: path, query: q}, &p); err != nil {
		return nil, "", err
	}
	if p.Items == nil {
		p.Items = []T{}
	}
	return p.Items, p.NextCursor, nil
}

// All calls page with "" and then with each next cursor until the last
// page, and returns every item. Use it with the List methods:
//
//	things, err := apiclient.All(ctx, func(cur string) ([]wire.Thing, string, error) {
//		return c.ListThings(ctx, apiclient.ThingQuery{Cursor: cur})
//	})
func All[T any](ctx context.Context, page func(cursor string) ([]T, string, error)) ([]T, error) {
	all := []T{}
	cursor := ""
	for {
		items, next, err := page(cursor)
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		if next == "" || next == cursor {
			return all, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cursor = next
	}
}

// CACert returns the CA certificate (PEM) devices trust for MQTTS. It
// needs no token.
func (c *Client) CACert(ctx context.Context) ([]byte, error) {
	resp, err := c.send(ctx, request{method: http.MethodGet, path: "/ca.pem", accept: "application/x-pem-file"})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s/ca.pem: %w", APIPath, err)
	}
	return data, nil
}

// OpenAPI returns the server's OpenAPI 3.1 description. It needs no token.
func (c *Client) OpenAPI(ctx context.Context) (json.RawMessage, error) {
	var doc json.RawMessage
	if err := c.do(ctx, request{method: http.MethodGet, path: "/openapi.json"}, &doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// ServerInfo is GET /server: the server's version and device addresses.
type ServerInfo struct {
	Version   string `json:"version"`
	MQTT      string `json:"mqtt,omitempty"`
	MQTTS     string `json:"mqtts,omitempty"`
	WebSocket string `json:"websocket"`
}

// Server returns the server's version and the addresses devices use.
func (c *Client) Server(ctx context.Context) (ServerInfo, error) {
	var out ServerInfo
	err := c.do(ctx, request{method: http.MethodGet, path: "/server"}, &out)
	return out, err
}
