package httpapi

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/shadow"
)

// The HTTP device API: /devices/{thing}/... routes that a device calls
// with its own credentials (not an API token), acting only as itself and
// only within its own policies.

// roleDevice marks a route the device itself calls: it authenticates with
// its secret or its client certificate (see device), not an API token.
const roleDevice = "device"

// DeviceAuthenticator tells who a device is, the same lookups MQTT uses
// (*auth.Devices).
type DeviceAuthenticator interface {
	Secret(ctx context.Context, thing, secret string) (auth.Identity, error)
	Certificate(ctx context.Context, cert *x509.Certificate) (auth.Identity, error)
}

// DeviceGateway lets a device's HTTP requests take the path of its MQTT
// publishes (*broker.Broker): its policies, its rate limit, subscribers,
// the bus.
type DeviceGateway interface {
	// PublishAs publishes a device's message; errors carry core kinds, and
	// a rate-limit refusal has a RetryAfter() time.Duration method.
	PublishAs(ctx context.Context, thing, clientID, topic string, payload []byte, qos byte, retain bool) error
	// Authorize checks a device action on a topic as a publish on it
	// (policies and rate limit) without publishing anything.
	Authorize(ctx context.Context, thing, clientID, topic, protocol string) error
}

type deviceKey struct{}

// deviceIdentity returns the device that authenticated a device route.
func deviceIdentity(r *http.Request) auth.Identity {
	id, _ := r.Context().Value(deviceKey{}).(auth.Identity)
	return id
}

// device wraps the handler of a /devices/{thing}/... route: it
// authenticates the device and checks that {thing} is the device itself.
// Credentials, in order: the client certificate of a TLS connection (the
// HTTPS listener asks for one and verifies it against Mote's CA); HTTP
// Basic with user = thing name and password = secret; "Authorization:
// Bearer <secret>" (the thing is the one in the path). The handler finds
// the identity with deviceIdentity(r).
func (s *server) device(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.devices == nil {
			return core.Errorf(core.KindUnavailable, "the HTTP device API is not enabled on this server")
		}
		thing, err := pathName(r, "thing")
		if err != nil {
			return err
		}
		id, err := s.authenticateDevice(r, thing)
		if err != nil {
			return err
		}
		if id.Thing != thing {
			return core.Errorf(core.KindForbidden, "authenticated as thing %q, which may not act as thing %q", id.Thing, thing)
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), deviceKey{}, id)))
	}
}

func (s *server) authenticateDevice(r *http.Request, pathThing string) (auth.Identity, error) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return s.devices.Certificate(r.Context(), r.TLS.PeerCertificates[0])
	}
	user, secret, err := deviceCredentials(r.Header.Get("Authorization"), pathThing)
	if err != nil {
		return auth.Identity{}, err
	}
	return s.devices.Secret(r.Context(), user, secret)
}

// deviceCredentials parses the Authorization header of a device request:
// "Basic base64(thing:secret)" or "Bearer secret" (the thing is the one in
// the path).
func deviceCredentials(h, pathThing string) (thing, secret string, err error) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	rest = strings.TrimSpace(rest)
	switch {
	case h == "":
		return "", "", core.Errorf(core.KindUnauthorized, "device credentials required: HTTP Basic (user = thing name, password = secret), Authorization: Bearer <secret>, or a client certificate on the HTTPS port")
	case strings.EqualFold(scheme, "Basic"):
		raw, derr := base64.StdEncoding.DecodeString(rest)
		if derr != nil {
			return "", "", core.Errorf(core.KindUnauthorized, "malformed Basic credentials")
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok || user == "" || pass == "" {
			return "", "", core.Errorf(core.KindUnauthorized, "Basic credentials must be thing:secret")
		}
		return user, pass, nil
	case strings.EqualFold(scheme, "Bearer"):
		if rest == "" {
			return "", "", core.Errorf(core.KindUnauthorized, "empty Bearer secret")
		}
		return pathThing, rest, nil
	}
	return "", "", core.Errorf(core.KindUnauthorized, "unsupported authorization scheme %q (use Basic or Bearer)", scheme)
}

// devicePublish is POST /devices/{thing}/messages?topic=T[&qos=1][&retain=false]:
// the body, as it is, becomes an MQTT message of the device.
func (s *server) devicePublish(w http.ResponseWriter, r *http.Request) error {
	if s.gateway == nil {
		return core.Errorf(core.KindUnavailable, "the HTTP device API is not enabled on this server")
	}
	q, err := parseQuery(r, "", "topic", "qos", "retain")
	if err != nil {
		return err
	}
	topic, ok := q.vals["topic"]
	if !ok || topic == "" {
		return core.Invalid("topic", "the topic query parameter is required, e.g. ?topic=things/%s/telemetry", r.PathValue("thing"))
	}
	qos := byte(1)
	switch q.vals["qos"] {
	case "", "1":
	case "0":
		qos = 0
	default:
		return core.Invalid("qos", "qos must be 0 or 1")
	}
	retain, err := q.boolean("retain")
	if err != nil {
		return err
	}
	limit := int64(s.maxMessage)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return errTooLarge(limit)
		}
		return core.Invalid("", "reading the request body: %v", err)
	}
	id := deviceIdentity(r)
	err = s.gateway.PublishAs(r.Context(), id.Thing, id.Thing, topic, body, qos, retain != nil && *retain)
	if err != nil {
		return retryAfter(w, err)
	}
	return noContent(w)
}

// retryAfter sets Retry-After (whole seconds, at least 1) for an error
// that says when to try again.
func retryAfter(w http.ResponseWriter, err error) error {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(ra.RetryAfter().Seconds())))))
	}
	return err
}

// deviceShadow checks a device shadow request: the shadow name, and the
// device's policies and rate limit for the MQTT topic of the same request
// ($mote/things/{thing}/shadow[/name/{shadow}]/{op}).
func (s *server) deviceShadow(w http.ResponseWriter, r *http.Request, op string) (thing, name string, err error) {
	if s.shadows == nil || s.gateway == nil {
		return "", "", core.Errorf(core.KindUnavailable, "device shadows are not enabled on this server")
	}
	if err := noParams(r); err != nil {
		return "", "", err
	}
	thing = deviceIdentity(r).Thing
	name = r.PathValue("shadow")
	topic := "$mote/things/" + thing + "/shadow/"
	if name == shadow.ClassicName {
		name = ""
	} else if serr := shadow.ValidateName(name); serr != nil {
		return "", "", core.Invalid("shadow", "%s", serr.Message)
	} else {
		topic += "name/" + name + "/"
	}
	if err := s.gateway.Authorize(r.Context(), thing, thing, topic+op, "http"); err != nil {
		return "", "", retryAfter(w, err)
	}
	return thing, name, nil
}

func (s *server) deviceGetShadow(w http.ResponseWriter, r *http.Request) error {
	return s.deviceShadowOp(w, r, "get", s.shadowGet)
}

func (s *server) deviceUpdateShadow(w http.ResponseWriter, r *http.Request) error {
	return s.deviceShadowOp(w, r, "update", s.shadowUpdate)
}

func (s *server) deviceDeleteShadow(w http.ResponseWriter, r *http.Request) error {
	return s.deviceShadowOp(w, r, "delete", s.shadowDelete)
}

// deviceShadowOp runs op for /devices/{thing}/shadows/{shadow} once the
// device may use the shadow topic of the operation.
func (s *server) deviceShadowOp(w http.ResponseWriter, r *http.Request, action string, op shadowOp) error {
	thing, name, err := s.deviceShadow(w, r, action)
	if err != nil {
		return err
	}
	return op(w, r, thing, name)
}
