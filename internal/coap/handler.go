package coap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	"github.com/plgd-dev/go-coap/v3/options/config"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/commands"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/shadow"
	"github.com/moteiot/mote/internal/store"
)

// Content formats (RFC 7252 §12.3, RFC 8949).
var (
	formatText = message.TextPlain
	formatJSON = message.AppJSON
	formatCBOR = message.AppCBOR
)

// Codes go-coap has no name for.
const (
	codeConflict codes.Code = 137 // 4.09, RFC 8132
)

// precheck runs on a session's goroutine before the library's block-wise
// layer buffers anything: a body announced (Size1) or growing (Block1)
// past MaxPayload is answered 4.13 with the limit in Size1 (RFC 7959
// §2.9.3), and the transfer never reaches the buffer.
func (s *Server) precheck(req *pool.Message, cc *udpclient.Conn, next config.HandlerFunc[*udpclient.Conn]) {
	if tooLarge(req, s.opts.MaxPayload) {
		// Before the library handles req: it releases req to its pool.
		s.block1.forget(cc, req)
		cc.ProcessReceivedMessageWithHandler(req, func(w *responsewriter.ResponseWriter[*udpclient.Conn], r *pool.Message) {
			s.m.request(codes.RequestEntityTooLarge)
			s.refusalLog("request body over coap-max-payload", "remote", cc.RemoteAddr().String(), "limit", s.opts.MaxPayload)
			_ = w.SetResponse(codes.RequestEntityTooLarge, formatText, bytes.NewReader([]byte("request body is larger than the server accepts")),
				message.Option{ID: message.Size1, Value: encodeUint(uint32(s.opts.MaxPayload))})
			// The library's own handling (skipped here) makes a
			// piggybacked answer of a confirmable request.
			w.Message().SetType(message.NonConfirmable)
			w.Message().SetMessageID(cc.GetMessageID())
			if r.Type() == message.Confirmable {
				w.Message().SetType(message.Acknowledgement)
				w.Message().SetMessageID(r.MessageID())
			}
		})
		return
	}
	if !req.HasOption(message.Block1) {
		cc.ProcessReceivedMessageWithHandler(req, next)
		return
	}
	// A block of a Block1 transfer: go-coap sees the token of the
	// transfer's first block (block1.go); the answer carries this
	// block's own token (RFC 7252 §5.3.1), an empty ACK none.
	own := bytes.Clone(req.Token())
	if canonical := s.block1.canonical(cc, req); !bytes.Equal(canonical, own) {
		req.SetToken(bytes.Clone(canonical))
	}
	cc.ProcessReceivedMessageWithHandler(req, func(w *responsewriter.ResponseWriter[*udpclient.Conn], r *pool.Message) {
		next(w, r)
		if w.Message().Code() != codes.Empty {
			w.Message().SetToken(own)
		}
	})
}

// tooLarge reports whether a request's body is, or will be, over max
// bytes: its Size1 option, its Block1 offset plus this block, or the
// datagram's own payload.
func tooLarge(req *pool.Message, limit int) bool {
	if v, err := req.GetOptionUint32(message.Size1); err == nil && int64(v) > int64(limit) {
		return true
	}
	n, _ := req.BodySize()
	if v, err := req.GetOptionUint32(message.Block1); err == nil {
		szx, num, _, derr := blockwise.DecodeBlockOption(v)
		if derr != nil {
			return false // the library answers a malformed option
		}
		if int64(num)*szx.Size()+n > int64(limit) {
			return true
		}
	}
	return n > int64(limit)
}

// encodeUint is a CoAP uint option value.
func encodeUint(v uint32) []byte {
	b := make([]byte, 4)
	n, _ := message.EncodeUint32(b, v)
	return b[:n]
}

// request is one parsed, authenticated request.
type request struct {
	w     *responsewriter.ResponseWriter[*udpclient.Conn]
	r     *pool.Message
	cc    *udpclient.Conn
	id    auth.Identity
	thing string
	rest  []string // the path after /things/{t}
}

// serve answers one request (whole: the library reassembled a block-wise
// body). It never panics on input; every refusal is a 4.xx code.
func (s *Server) serve(w *responsewriter.ResponseWriter[*udpclient.Conn], r *pool.Message, dtls bool) {
	code := s.handle(w, r, dtls)
	s.m.request(code)
}

func (s *Server) handle(w *responsewriter.ResponseWriter[*udpclient.Conn], r *pool.Message, dtls bool) codes.Code {
	switch r.Code() {
	case codes.GET, codes.POST, codes.PUT, codes.DELETE:
	default:
		return s.fail(w, codes.MethodNotAllowed, "method not allowed")
	}
	path, err := r.Options().Path()
	if err != nil {
		return s.fail(w, codes.BadOption, "bad Uri-Path")
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if len(segs) < 3 || segs[0] != "things" {
		return s.fail(w, codes.NotFound, "resources are under /things/{thing}/")
	}
	thing := segs[1]
	if err := core.ValidateName("thing", thing); err != nil {
		return s.fail(w, codes.BadRequest, "invalid thing name")
	}
	for _, seg := range segs[2:] {
		if seg == "" {
			return s.fail(w, codes.BadRequest, "empty path segment")
		}
	}
	token, err := s.queries(r)
	if err != nil {
		return s.fail(w, codes.BadOption, err.Error())
	}
	ctx, cancel := context.WithTimeout(w.Conn().Context(), s.opts.RequestTimeout)
	defer cancel()
	id, code, msg := s.authenticate(ctx, w.Conn(), token, dtls)
	if code != 0 {
		return s.fail(w, code, msg)
	}
	if id.Thing != thing {
		s.m.forbidden.Inc()
		s.refusalLog("device acted as another thing", "thing", id.Thing, "path_thing", thing)
		return s.fail(w, codes.Forbidden, "a device may act only as itself")
	}
	q := &request{w: w, r: r, cc: w.Conn(), id: id, thing: thing, rest: segs[2:]}
	switch {
	case q.rest[0] == "shadow" && len(q.rest) <= 2:
		name := ""
		if len(q.rest) == 2 {
			name = q.rest[1]
		}
		switch r.Code() {
		case codes.GET:
			return s.getShadow(ctx, q, name)
		case codes.PUT, codes.POST:
			return s.updateShadow(ctx, q, name)
		}
		return s.fail(w, codes.MethodNotAllowed, "shadow: GET, PUT or POST")
	case q.rest[0] == "commands" && len(q.rest) == 1:
		if r.Code() != codes.GET {
			return s.fail(w, codes.MethodNotAllowed, "commands: GET")
		}
		return s.getCommands(ctx, q)
	case q.rest[0] == "commands" && len(q.rest) == 2 && r.Code() == codes.POST:
		return s.reportCommand(ctx, q, q.rest[1])
	case r.Code() == codes.POST:
		return s.publish(ctx, q)
	}
	return s.fail(w, codes.MethodNotAllowed, "publish with POST")
}

// queries parses the Uri-Query options: only token=thing:secret is
// known; an unknown one is a critical option we cannot honour (4.02).
func (s *Server) queries(r *pool.Message) (token string, err error) {
	qs, err := r.Options().Queries()
	if err != nil && !errors.Is(err, message.ErrOptionNotFound) {
		return "", errors.New("bad Uri-Query")
	}
	for _, q := range qs {
		k, v, _ := strings.Cut(q, "=")
		switch k {
		case "token":
			if token != "" {
				return "", errors.New("token given twice")
			}
			if u, uerr := url.QueryUnescape(v); uerr == nil {
				v = u
			}
			if v == "" {
				return "", errors.New("empty token")
			}
			token = v
		default:
			return "", errors.New("unknown query parameter")
		}
	}
	return token, nil
}

// authenticate finds the device of a request: the DTLS session's, or the
// token's on plain UDP when token authentication is on.
func (s *Server) authenticate(ctx context.Context, cc *udpclient.Conn, token string, dtls bool) (auth.Identity, codes.Code, string) {
	if dtls {
		id, ok := cc.Context().Value(identityKey{}).(auth.Identity)
		if !ok {
			return auth.Identity{}, codes.Unauthorized, "DTLS session without a device"
		}
		if !id.Expires.IsZero() && !time.Now().Before(id.Expires) {
			_ = cc.Close() // a session must not outlive its credential
			return auth.Identity{}, codes.Unauthorized, "credential expired"
		}
		return id, 0, ""
	}
	if !s.opts.TokenAuth {
		s.m.authFailures.WithLabelValues("token").Inc()
		return auth.Identity{}, codes.Unauthorized, "plain CoAP is not authenticated on this server: use DTLS (certificate or PSK)"
	}
	if token == "" {
		s.m.authFailures.WithLabelValues("token").Inc()
		return auth.Identity{}, codes.Unauthorized, "credentials required: ?token=thing:secret"
	}
	thing, secret, ok := strings.Cut(token, ":")
	if !ok {
		s.m.authFailures.WithLabelValues("token").Inc()
		return auth.Identity{}, codes.Unauthorized, "token must be thing:secret"
	}
	id, err := s.opts.Auth.Secret(ctx, thing, secret)
	if err != nil {
		s.m.authFailures.WithLabelValues("token").Inc()
		if auth.IsRefusal(err) {
			s.refusalLog("CoAP token refused", "thing", thing, "remote", cc.RemoteAddr().String())
			if core.KindOf(err) == core.KindForbidden {
				return auth.Identity{}, codes.Forbidden, "thing disabled"
			}
			return auth.Identity{}, codes.Unauthorized, "bad thing name or secret"
		}
		return auth.Identity{}, codes.ServiceUnavailable, "cannot authenticate now"
	}
	return id, 0, ""
}

// publish is POST /things/{t}/{rest...}: an MQTT message of the device on
// things/{t}/{rest}, through the broker (policies, rate limit, rules,
// journal). A confirmable request is QoS 1: 2.04 comes after the message
// is durable where a rule stores it; a non-confirmable one is QoS 0.
func (s *Server) publish(ctx context.Context, q *request) codes.Code {
	body, code := s.body(q, true)
	if code != 0 {
		return code
	}
	qos := byte(0)
	if q.r.Type() == message.Confirmable {
		qos = 1
	}
	topic := "things/" + q.thing + "/" + strings.Join(q.rest, "/")
	if err := s.opts.Gateway.PublishVia(ctx, "coap", q.thing, q.thing, topic, body, qos, false); err != nil {
		return s.failErr(q.w, err)
	}
	return s.ok(q.w, codes.Changed, 0, nil)
}

// body reads a request body and converts CBOR to JSON. raw: other
// formats pass as they are (publish); otherwise only JSON and CBOR (and
// no format, taken as JSON) are accepted (4.15).
func (s *Server) body(q *request, raw bool) ([]byte, codes.Code) {
	var body []byte
	if q.r.Body() != nil {
		b, err := q.r.ReadBody()
		if err != nil {
			return nil, s.fail(q.w, codes.BadRequest, "cannot read the body")
		}
		body = b
	}
	if len(body) > s.opts.MaxPayload {
		return nil, s.fail(q.w, codes.RequestEntityTooLarge, "request body is larger than the server accepts")
	}
	cf, err := q.r.ContentFormat()
	if err != nil {
		return body, 0 // none: as it is
	}
	switch cf {
	case formatCBOR:
		j, err := cborToJSON(body)
		if err != nil {
			return nil, s.fail(q.w, codes.BadRequest, "malformed CBOR: "+err.Error())
		}
		return j, 0
	case formatJSON:
		if !raw && !json.Valid(body) {
			return nil, s.fail(q.w, codes.BadRequest, "malformed JSON")
		}
		return body, 0
	}
	if raw {
		return body, 0
	}
	return nil, s.fail(q.w, codes.UnsupportedMediaType, "use application/json (50) or application/cbor (60)")
}

// shadowTopic is the MQTT topic of a shadow operation, which the device's
// policies must allow (as for the HTTP device API).
func shadowTopic(thing, name, op string) string {
	t := "$mote/things/" + thing + "/shadow/"
	if name != "" {
		t += "name/" + name + "/"
	}
	return t + op
}

// shadowName checks a shadow name of a path; "" and "classic" are the
// classic shadow.
func shadowName(name string) (string, error) {
	if name == "" || name == shadow.ClassicName {
		return "", nil
	}
	if serr := shadow.ValidateName(name); serr != nil {
		return "", errors.New(serr.Message)
	}
	return name, nil
}

func (s *Server) getShadow(ctx context.Context, q *request, name string) codes.Code {
	if s.opts.Shadows == nil {
		return s.fail(q.w, codes.ServiceUnavailable, "device shadows are not enabled on this server")
	}
	name, err := shadowName(name)
	if err != nil {
		return s.fail(q.w, codes.BadRequest, err.Error())
	}
	if err := s.opts.Gateway.Authorize(ctx, q.thing, q.thing, shadowTopic(q.thing, name, "get"), "coap"); err != nil {
		return s.failErr(q.w, err)
	}
	doc, err := s.opts.Shadows.Get(ctx, q.thing, name)
	if err != nil && !isShadowNotFound(err) {
		return s.failErr(q.w, err)
	}
	observe, obsErr := q.r.Observe()
	switch {
	case obsErr == nil && observe == 0:
		if seq, ok := s.obs.addShadow(q, name); ok {
			if err != nil { // observing a shadow that does not exist yet
				return s.okObserve(q, codes.NotFound, seq, formatText, []byte("no shadow yet"))
			}
			return s.okObserve(q, codes.Content, seq, formatJSON, doc)
		}
	case obsErr == nil && observe == 1:
		s.obs.remove(q.cc, q.r.Token())
	}
	if err != nil {
		return s.failErr(q.w, err)
	}
	return s.okFormat(q, codes.Content, doc)
}

func isShadowNotFound(err error) bool {
	var se *shadow.Error
	return errors.As(err, &se) && se.Code == 404
}

func (s *Server) updateShadow(ctx context.Context, q *request, name string) codes.Code {
	if s.opts.Shadows == nil {
		return s.fail(q.w, codes.ServiceUnavailable, "device shadows are not enabled on this server")
	}
	name, err := shadowName(name)
	if err != nil {
		return s.fail(q.w, codes.BadRequest, err.Error())
	}
	if err := s.opts.Gateway.Authorize(ctx, q.thing, q.thing, shadowTopic(q.thing, name, "update"), "coap"); err != nil {
		return s.failErr(q.w, err)
	}
	body, code := s.body(q, false)
	if code != 0 {
		return code
	}
	out, err := s.opts.Shadows.Update(ctx, q.thing, name, body)
	if err != nil {
		return s.failErr(q.w, err)
	}
	return s.okFormat(q, codes.Changed, out)
}

// commandList is the body of GET /things/{t}/commands and of its
// notifications: the commands delivered, oldest first.
type commandList struct {
	Items []commands.Message `json:"items"`
}

func commandBody(list []store.Command) []byte {
	out := commandList{Items: make([]commands.Message, len(list))}
	for i, c := range list {
		out.Items[i] = commands.MessageOf(c)
	}
	b, _ := json.Marshal(out)
	return b
}

func (s *Server) getCommands(ctx context.Context, q *request) codes.Code {
	if s.opts.Commands == nil {
		return s.fail(q.w, codes.ServiceUnavailable, "commands are not enabled on this server")
	}
	observe, obsErr := q.r.Observe()
	if obsErr == nil && observe == 1 {
		s.obs.remove(q.cc, q.r.Token())
	}
	if obsErr == nil && observe == 0 {
		if o, seq, ok := s.obs.addCommands(q); ok {
			// The first answer is what is pending now; the observation's
			// goroutine notifies what comes later.
			list, err := s.opts.Commands.Poll(ctx, q.thing, 0)
			if err != nil {
				s.obs.remove(q.cc, q.r.Token())
				return s.failErr(q.w, err)
			}
			code := s.okObserve(q, codes.Content, seq, formatJSON, commandBody(list))
			o.start()
			return code
		}
	}
	list, err := s.opts.Commands.Poll(ctx, q.thing, 0)
	if err != nil {
		return s.failErr(q.w, err)
	}
	return s.okFormat(q, codes.Content, commandBody(list))
}

// commandResult is the body of POST /things/{t}/commands/{id}, as for
// the HTTP device API.
type commandResult struct {
	Status string          `json:"status"`
	Output json.RawMessage `json:"output,omitempty"`
}

func (s *Server) reportCommand(ctx context.Context, q *request, id string) codes.Code {
	if s.opts.Commands == nil {
		return s.fail(q.w, codes.ServiceUnavailable, "commands are not enabled on this server")
	}
	if err := core.ValidateName("id", id); err != nil {
		return s.fail(q.w, codes.BadRequest, "invalid command id")
	}
	if err := s.opts.Gateway.Authorize(ctx, q.thing, q.thing, commands.ResultTopic(q.thing, id), "coap"); err != nil {
		return s.failErr(q.w, err)
	}
	body, code := s.body(q, false)
	if code != 0 {
		return code
	}
	var res commandResult
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		return s.fail(q.w, codes.BadRequest, "result must be {\"status\": ..., \"output\"?: ...}")
	}
	c, err := s.opts.Commands.Report(ctx, q.thing, id, store.CommandResult{Status: res.Status, Output: res.Output})
	if err != nil {
		return s.failErr(q.w, err)
	}
	return s.okFormat(q, codes.Changed, mustJSON(commands.MessageOf(c)))
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// ok answers code with a body in format cf (no body: no format).
func (s *Server) ok(w *responsewriter.ResponseWriter[*udpclient.Conn], code codes.Code, cf message.MediaType, body []byte) codes.Code {
	if body == nil {
		_ = w.SetResponse(code, cf, nil)
		return code
	}
	_ = w.SetResponse(code, cf, bytes.NewReader(body))
	return code
}

// okFormat answers a JSON document as JSON, or as CBOR when the request's
// Accept option asks for it.
func (s *Server) okFormat(q *request, code codes.Code, doc []byte) codes.Code {
	cf, body := s.negotiate(q.r, doc)
	return s.ok(q.w, code, cf, body)
}

func (s *Server) negotiate(r *pool.Message, doc []byte) (message.MediaType, []byte) {
	if a, err := r.Accept(); err == nil && a == formatCBOR {
		if c, err := jsonToCBOR(doc); err == nil {
			return formatCBOR, c
		}
	}
	return formatJSON, doc
}

// okObserve answers the registration of an observation.
func (s *Server) okObserve(q *request, code codes.Code, seq uint32, cf message.MediaType, body []byte) codes.Code {
	if cf == formatJSON {
		cf, body = s.negotiate(q.r, body)
	}
	_ = q.w.SetResponse(code, cf, bytes.NewReader(body), message.Option{ID: message.Observe, Value: encodeUint(seq)})
	return code
}

// fail answers a 4.xx/5.xx code with a diagnostic payload (RFC 7252
// §5.5.2): never the request's body or a secret.
func (s *Server) fail(w *responsewriter.ResponseWriter[*udpclient.Conn], code codes.Code, msg string) codes.Code {
	_ = w.SetResponse(code, formatText, bytes.NewReader([]byte(msg)))
	return code
}

// failErr maps an error kind (or a shadow error's status) to a CoAP code.
func (s *Server) failErr(w *responsewriter.ResponseWriter[*udpclient.Conn], err error) codes.Code {
	var se *shadow.Error
	if errors.As(err, &se) {
		return s.fail(w, httpToCoAP(se.Code), se.Message)
	}
	code := kindToCoAP(core.KindOf(err))
	msg := err.Error()
	if code == codes.InternalServerError {
		s.log.Error("coap request failed", "error", err)
		msg = "internal error"
	}
	return s.fail(w, code, msg)
}

func kindToCoAP(k core.Kind) codes.Code {
	switch k {
	case core.KindInvalid:
		return codes.BadRequest
	case core.KindNotFound:
		return codes.NotFound
	case core.KindConflict:
		return codeConflict
	case core.KindUnauthorized:
		return codes.Unauthorized
	case core.KindForbidden:
		return codes.Forbidden
	case core.KindTooLarge, core.KindQuota:
		return codes.RequestEntityTooLarge
	case core.KindRateLimited:
		return codes.TooManyRequests
	case core.KindUnavailable, core.KindInsufficientStorage:
		return codes.ServiceUnavailable
	}
	return codes.InternalServerError
}

func httpToCoAP(status int) codes.Code {
	switch status {
	case 400:
		return codes.BadRequest
	case 401:
		return codes.Unauthorized
	case 403:
		return codes.Forbidden
	case 404:
		return codes.NotFound
	case 409:
		return codeConflict
	case 413:
		return codes.RequestEntityTooLarge
	case 415:
		return codes.UnsupportedMediaType
	case 429:
		return codes.TooManyRequests
	case 503:
		return codes.ServiceUnavailable
	}
	return codes.InternalServerError
}
