// Package httpapi is Mote's REST API (docs/api.md): things, credentials,
// thing types, groups, policies and API tokens over the registry, with
// bearer-token authentication, role checks, RFC 9457 problem responses and
// an OpenAPI 3.1 description of itself.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/alarms"
	"github.com/moteiot/mote/internal/analytics"
	"github.com/moteiot/mote/internal/artifacts"
	"github.com/moteiot/mote/internal/audit"
	"github.com/moteiot/mote/internal/certrotate"
	"github.com/moteiot/mote/internal/commands"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/dashboards"
	"github.com/moteiot/mote/internal/devicemodel"
	"github.com/moteiot/mote/internal/files"
	"github.com/moteiot/mote/internal/fleetindex"
	"github.com/moteiot/mote/internal/jobs"
	"github.com/moteiot/mote/internal/live"
	"github.com/moteiot/mote/internal/methods"
	"github.com/moteiot/mote/internal/oidc"
	"github.com/moteiot/mote/internal/profiles"
	"github.com/moteiot/mote/internal/provisioning"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/ruleengine"
	"github.com/moteiot/mote/internal/shadow"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/telemetry"
	"github.com/moteiot/mote/internal/thingimport"
	"github.com/moteiot/mote/internal/users"
)

// BasePath is where the API lives; route paths are relative to it.
const BasePath = "/api/v1"

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 1 << 20

// Options configure the API handler.
type Options struct {
	Registry  *registry.Registry
	Shadows   *shadow.Service    // nil: the shadow routes answer 503
	Rules     *ruleengine.Engine // nil: the rule routes answer 503 (but /rules/test)
	Telemetry telemetry.Store    // nil: the telemetry routes answer 503
	Methods   *methods.Service   // nil: the direct method route answers 503
	// Devices and Gateway serve the HTTP device API (/devices/...);
	// nil: those routes answer 503. MaxMessageSize bounds a device
	// message (0: 256 KiB).
	Devices        DeviceAuthenticator
	Gateway        DeviceGateway
	MaxMessageSize int
	// Server describes the running server for GET /server (nil: only
	// the version is reported).
	Server  func() ServerInfo
	Logger  *slog.Logger
	Metrics prometheus.Registerer // may be nil
	// Users signs people in to the console (nil: /auth/login answers
	// 503 and the session cookie is not accepted).
	Users *users.Service
	// Live feeds GET /events (nil: it answers 503); LiveDone, when
	// closed, ends every open event stream (server shutdown).
	Live     *live.Hub
	LiveDone <-chan struct{}
	// Commands queues commands to devices (nil: the command routes
	// answer 503).
	Commands *commands.Service
	// C2D sends raw Azure IoT Hub cloud-to-device messages (nil: POST
	// /things/{name}/c2d answers 503).
	C2D C2DSender
	// Alarms keeps alarms (nil: the alarm routes answer 503).
	Alarms *alarms.Service
	// Analytics runs the detectors (nil: /analytics routes answer 503).
	Analytics *analytics.Engine
	// Fleet answers fleet queries (?q=, /things:count, dynamic group
	// members); nil: those answer 503.
	Fleet *fleetindex.Index
	// MaxLongPollsPerDevice bounds the command long polls one thing
	// holds open at once; more are answered 429 (0: 4).
	MaxLongPollsPerDevice int
	// Artifacts serves firmware artifacts and Files device files (nil:
	// their routes answer 503). An upload with a Content-Length gets
	// BodyTimeout plus its length at UploadMinRate bytes/s for its body.
	Artifacts     *artifacts.Service
	Files         *files.Service
	BodyTimeout   time.Duration
	UploadMinRate int64
	// Jobs is the job service (nil: the job routes answer 503).
	Jobs *jobs.Service
	// Profiles is the configuration profile service (nil: the profile
	// routes answer 503).
	Profiles *profiles.Service
	// Dashboards keeps the console's dashboards and StatsHistory the
	// overview's history (nil: their routes answer 503).
	Dashboards   *dashboards.Service
	StatsHistory store.StatsHistoryStore
	// Models caches the device models of thing types (nil: models are
	// not checked against desired updates and commands); a type's model
	// may be up to TypeModelMaxSize bytes (0: 64 KiB).
	Models           *devicemodel.Models
	TypeModelMaxSize int
	// PositionKeys are the telemetry keys of latitude and longitude of
	// the fleet map (--position-keys; zero: "lat", "lon").
	PositionKeys [2]string
	// Provisioning runs enrollment groups and claim tokens (nil: their
	// routes answer 503); ProvisioningLimiter limits device requests per
	// source; ProvisioningEndpoint is the URL claim QR codes carry ("":
	// the request's).
	Provisioning         *provisioning.Service
	ProvisioningLimiter  *provisioning.Limiter
	ProvisioningEndpoint string
	// Audit records every change made through the API (nil: nothing is
	// recorded and /audit answers 503); see audit.go.
	Audit *audit.Recorder
	// Importer imports things in bulk (nil: POST /things:import answers
	// 503).
	Importer *thingimport.Importer
	// OIDC signs people in through an OpenID Connect provider (nil:
	// single sign-on is off; see oidc.go).
	OIDC *oidc.RP
	// CertRotation serves POST /devices/{thing}/certificate (nil: 503).
	CertRotation *certrotate.Service
}

// handlerFunc is the shape of every API handler: a returned error becomes a
// problem response.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// Role requirements of a route.
const (
	rolePublic = ""                    // no token needed
	roleView   = registry.RoleViewer   // any valid token
	roleWrite  = registry.RoleOperator // operator or admin
	roleAdmin  = registry.RoleAdmin    // admin only
)

// route is one entry of the route table, which both the mux and the
// OpenAPI test read.
type route struct {
	method string
	path   string // relative to BasePath, in ServeMux pattern syntax
	role   string
	h      handlerFunc
}

// pattern is the ServeMux pattern of a route's path.
func (rt route) pattern() string { return BasePath + rt.path }

type server struct {
	fleet      *fleetindex.Index
	reg        *registry.Registry
	shadows    *shadow.Service
	rules      *ruleengine.Engine
	telemetry  telemetry.Store
	methods    *methods.Service
	c2d        C2DSender
	devices    DeviceAuthenticator
	gateway    DeviceGateway
	maxMessage int
	info       func() ServerInfo
	log        *slog.Logger
	metrics    *metrics
	users      *users.Service
	live       *live.Hub
	liveDone   <-chan struct{}
	commands   *commands.Service
	alarms     *alarms.Service
	analytics  *analytics.Engine
	longPolls  *longPolls

	artifacts     *artifacts.Service
	files         *files.Service
	bodyTimeout   time.Duration
	uploadMinRate int64
	jobs          *jobs.Service
	profiles      *profiles.Service
	dashboards    *dashboards.Service
	statsHistory  store.StatsHistoryStore

	models       *devicemodel.Models
	typeModelMax int
	posKeys      [2]string

	prov         *provisioning.Service // provisioning.go
	provLimit    *provisioning.Limiter
	provEndpoint string

	tokenLimits tokenLimits

	audit       *audit.Recorder
	auditRoutes map[string]auditRoute
	importer    *thingimport.Importer
	oidc        *oidc.RP
	certRotate  *certrotate.Service
}

// routes is the route table: New registers it and TestOpenAPIMatchesRoutes
// compares it with openapi.json (on a zero server, looking only at methods
// and paths).
func (s *server) routes() []route {
	return []route{
		{"GET", "/ca.pem", rolePublic, s.getCACert},
		{"GET", "/crl.pem", rolePublic, s.getCRL},
		{"GET", "/openapi.json", rolePublic, s.getOpenAPI},
		{"GET", "/server", roleView, s.getServer},

		{"POST", "/auth/login", rolePublic, s.login},
		{"POST", "/auth/logout", rolePublic, s.logout},
		{"GET", "/auth/me", rolePublic, s.me}, // authenticates itself
		{"GET", "/auth/oidc", rolePublic, s.oidcInfo},
		{"GET", "/auth/oidc/login", rolePublic, s.oidcLogin},
		{"GET", "/auth/oidc/callback", rolePublic, s.oidcCallback},
		{"GET", "/events", roleView, s.events},

		{"POST", "/things", roleWrite, s.createThing},
		{"GET", "/things", roleView, s.listThings},
		{"GET", "/things:count", roleView, s.countThings},
		{"POST", "/things:import", roleWrite, s.importThings},
		{"GET", "/stats", roleView, s.getStats},
		{"GET", "/stats/history", roleView, s.getStatsHistory},
		{"GET", "/things/{name}", roleView, s.getThing},
		{"PATCH", "/things/{name}", roleWrite, s.updateThing},
		{"DELETE", "/things/{name}", roleWrite, s.deleteThing},
		{"PUT", "/things/{name}/policies/{policy}", roleWrite, s.attachPolicy},
		{"DELETE", "/things/{name}/policies/{policy}", roleWrite, s.detachPolicy},

		{"POST", "/things/{name}/credentials", roleWrite, s.createCredential},
		{"GET", "/things/{name}/credentials", roleView, s.listCredentials},
		{"GET", "/things/{name}/credentials/{id}", roleView, s.getCredential},
		{"POST", "/things/{name}/credentials/{id}/revoke", roleWrite, s.revokeCredential},
		{"POST", "/things/{name}/credentials/{id}/rotate", roleWrite, s.rotateCredential},
		{"DELETE", "/things/{name}/credentials/{id}", roleWrite, s.deleteCredential},
		{"GET", "/things/{name}/credentials/{id}/psk", roleAdmin, s.getCredentialPSK},

		{"GET", "/things/{name}/shadows", roleView, s.listShadows},
		{"GET", "/things/{name}/shadows/{shadow}", roleView, s.getShadow},
		{"POST", "/things/{name}/shadows/{shadow}", roleWrite, s.updateShadow},
		{"DELETE", "/things/{name}/shadows/{shadow}", roleWrite, s.deleteShadow},

		{"POST", "/types", roleWrite, s.createType},
		{"GET", "/types", roleView, s.listTypes},
		{"GET", "/types/{name}", roleView, s.getType},
		{"PATCH", "/types/{name}", roleWrite, s.updateType},
		{"DELETE", "/types/{name}", roleWrite, s.deleteType},

		{"POST", "/groups", roleWrite, s.createGroup},
		{"GET", "/groups", roleView, s.listGroups},
		{"GET", "/groups/{name}", roleView, s.getGroup},
		{"PATCH", "/groups/{name}", roleWrite, s.updateGroup},
		{"DELETE", "/groups/{name}", roleWrite, s.deleteGroup},
		{"GET", "/groups/{name}/things", roleView, s.groupThings},

		{"POST", "/policies", roleWrite, s.createPolicy},
		{"GET", "/policies", roleView, s.listPolicies},
		{"POST", "/policies:validate", roleView, s.validatePolicy}, // changes nothing
		{"GET", "/policies/{name}", roleView, s.getPolicy},
		{"PUT", "/policies/{name}", roleWrite, s.replacePolicy},
		{"DELETE", "/policies/{name}", roleWrite, s.deletePolicy},

		{"POST", "/rules", roleWrite, s.createRule},
		{"GET", "/rules", roleView, s.listRules},
		{"POST", "/rules/test", roleView, s.testRule},
		{"GET", "/rules/{name}", roleView, s.getRule},
		{"PUT", "/rules/{name}", roleWrite, s.replaceRule},
		{"PATCH", "/rules/{name}", roleWrite, s.patchRule},
		{"DELETE", "/rules/{name}", roleWrite, s.deleteRule},

		{"POST", "/things/{name}/methods/{method}", roleWrite, s.invokeMethod},
		{"POST", "/things/{name}/c2d", roleWrite, s.sendC2D},

		{"POST", "/things/{name}/commands", roleWrite, s.createCommand},
		{"GET", "/things/{name}/commands", roleView, s.listCommands},
		{"GET", "/things/{name}/commands/{id}", roleView, s.getCommand},
		{"DELETE", "/things/{name}/commands/{id}", roleWrite, s.cancelCommand},

		{"GET", "/alarms", roleView, s.listAlarms},
		{"GET", "/alarms/{id}", roleView, s.getAlarm},
		{"POST", "/alarms/{id}/ack", roleWrite, s.ackAlarm},
		{"POST", "/alarms/{id}/clear", roleWrite, s.clearAlarm},
		{"POST", "/analytics/rules", roleWrite, s.createAnalyticsRule},
		{"GET", "/analytics/rules", roleView, s.listAnalyticsRules},
		{"GET", "/analytics/rules/{name}", roleView, s.getAnalyticsRule},
		{"PUT", "/analytics/rules/{name}", roleWrite, s.replaceAnalyticsRule},
		{"DELETE", "/analytics/rules/{name}", roleWrite, s.deleteAnalyticsRule},

		{"POST", "/dashboards", roleWrite, s.createDashboard},
		{"GET", "/dashboards", roleView, s.listDashboards},
		{"GET", "/dashboards/{name}", roleView, s.getDashboard},
		{"PUT", "/dashboards/{name}", roleWrite, s.replaceDashboard},
		{"DELETE", "/dashboards/{name}", roleWrite, s.deleteDashboard},

		{"POST", "/devices/{thing}/messages", roleDevice, s.device(s.devicePublish)},
		{"GET", "/devices/{thing}/shadows/{shadow}", roleDevice, s.device(s.deviceGetShadow)},
		{"POST", "/devices/{thing}/certificate", roleDevice, s.device(s.deviceRotateCertificate)},
		{"POST", "/devices/{thing}/shadows/{shadow}", roleDevice, s.device(s.deviceUpdateShadow)},
		{"DELETE", "/devices/{thing}/shadows/{shadow}", roleDevice, s.device(s.deviceDeleteShadow)},
		{"GET", "/devices/{thing}/commands", roleDevice, s.device(s.devicePollCommands)},
		{"POST", "/devices/{thing}/commands/{id}/result", roleDevice, s.device(s.deviceReportCommand)},

		{"POST", "/jobs", roleWrite, s.createJob},
		{"GET", "/jobs", roleView, s.listJobs},
		{"GET", "/jobs/{id}", roleView, s.getJob},
		{"DELETE", "/jobs/{id}", roleWrite, s.deleteJob},
		{"POST", "/jobs/{id}/cancel", roleWrite, s.cancelJob},
		{"GET", "/jobs/{id}/executions", roleView, s.listJobExecutions},
		{"GET", "/things/{name}/jobs", roleView, s.listThingJobs},
		{"GET", "/devices/{thing}/jobs", roleDevice, s.device(s.deviceGetPendingJobs)},
		{"POST", "/devices/{thing}/jobs/start-next", roleDevice, s.device(s.deviceStartNextJob)},
		{"GET", "/devices/{thing}/jobs/{jobId}", roleDevice, s.device(s.deviceDescribeJob)},
		{"POST", "/devices/{thing}/jobs/{jobId}/update", roleDevice, s.device(s.deviceUpdateJob)},

		{"POST", "/profiles", roleWrite, s.createProfile},
		{"GET", "/profiles", roleView, s.listProfiles},
		{"GET", "/profiles/{name}", roleView, s.getProfile},
		{"PUT", "/profiles/{name}", roleWrite, s.updateProfile},
		{"DELETE", "/profiles/{name}", roleWrite, s.deleteProfile},
		{"GET", "/profiles/{name}/compliance", roleView, s.profileCompliance},
		{"GET", "/things/{name}/profiles", roleView, s.listThingProfiles},

		{"GET", "/things/{name}/telemetry", roleView, s.thingTelemetry},
		{"GET", "/things/{name}/telemetry/latest", roleView, s.thingTelemetryLatest},
		{"GET", "/telemetry", roleView, s.queryTelemetry},

		{"POST", "/artifacts", roleWrite, s.createArtifact},
		{"GET", "/artifacts", roleView, s.listArtifacts},
		{"GET", "/artifacts/{name}/{version}", roleView, s.getArtifact},
		{"DELETE", "/artifacts/{name}/{version}", roleWrite, s.deleteArtifact},
		{"GET", "/artifacts/{name}/{version}/content", roleView, s.downloadArtifactAPI},
		{"POST", "/artifacts/{name}/{version}/url", roleWrite, s.createArtifactURL},
		{"GET", "/artifacts/{name}/{version}/download", rolePublic, s.downloadArtifactSigned}, // signed URL: exp and sig are the credentials
		{"GET", "/fleet/firmware", roleView, s.fleetFirmware},
		{"GET", "/fleet/positions", roleView, s.fleetPositions},
		{"GET", "/devices/{thing}/artifacts/{name}/{version}", roleDevice, s.device(s.deviceDownloadArtifact)},

		{"PUT", "/devices/{thing}/files/{name}", roleDevice, s.device(s.devicePutFile)},
		{"GET", "/devices/{thing}/files/{name}", roleDevice, s.device(s.deviceGetFile)},
		{"GET", "/things/{name}/files", roleView, s.listFiles},
		{"GET", "/things/{name}/files/{file}", roleView, s.getFile},
		{"GET", "/things/{name}/files/{file}/content", roleView, s.downloadFile},
		{"DELETE", "/things/{name}/files/{file}", roleWrite, s.deleteFile},

		{"POST", "/enrollments", roleWrite, s.createEnrollment},
		{"GET", "/enrollments", roleView, s.listEnrollments},
		{"GET", "/enrollments/{name}", roleView, s.getEnrollment},
		{"PATCH", "/enrollments/{name}", roleWrite, s.updateEnrollment},
		{"DELETE", "/enrollments/{name}", roleWrite, s.deleteEnrollment},
		{"GET", "/enrollments/{name}/verification-code", roleWrite, s.getVerificationCode},
		{"POST", "/enrollments/{name}/verify", roleWrite, s.verifyEnrollmentCA},
		{"POST", "/provisioning/register", rolePublic, s.provisioningRegister}, // the derived key is the credential
		{"POST", "/provisioning/claim", rolePublic, s.provisioningClaim},       // the claim token is the credential
		{"POST", "/claims", roleWrite, s.createClaim},
		{"GET", "/claims", roleView, s.listClaims},
		{"GET", "/claims/{id}", roleView, s.getClaim},
		{"DELETE", "/claims/{id}", roleWrite, s.deleteClaim},
		{"GET", "/claims/{id}/qr.png", roleWrite, s.getClaimQR},

		{"POST", "/tokens", roleView, s.createToken}, // for oneself; no higher, no wider (tokens.go)
		{"GET", "/tokens", roleView, s.listTokens},   // an admin's all, anyone else's own
		{"DELETE", "/tokens/{id}", roleView, s.deleteToken},

		{"POST", "/users", roleAdmin, s.createUser},
		{"GET", "/users", roleAdmin, s.listUsers},
		{"GET", "/users/{name}", roleView, s.getUser}, // oneself, or an admin
		{"PATCH", "/users/{name}", roleAdmin, s.updateUser},
		{"DELETE", "/users/{name}", roleAdmin, s.deleteUser},
		{"POST", "/users/{name}/password", roleView, s.changePassword}, // oneself with the old one, or an admin

		{"GET", "/audit", roleAdmin, s.listAudit},
		{"GET", "/audit/export", roleAdmin, s.exportAudit},
	}
}

// New returns the handler for everything under /api/v1/ (the daemon mounts
// it at "/api/v1/"); it expects the full request path, /api/v1 included.
func New(o Options) http.Handler {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &server{reg: o.Registry, shadows: o.Shadows, rules: o.Rules, telemetry: o.Telemetry, info: o.Server, log: log, metrics: newMetrics(o.Metrics, log)}
	s.users, s.live, s.liveDone = o.Users, o.Live, o.LiveDone
	s.methods, s.devices, s.gateway, s.maxMessage = o.Methods, o.Devices, o.Gateway, o.MaxMessageSize
	s.commands = o.Commands
	s.c2d = o.C2D
	s.artifacts, s.files, s.bodyTimeout, s.uploadMinRate = o.Artifacts, o.Files, o.BodyTimeout, o.UploadMinRate
	s.alarms = o.Alarms
	s.analytics = o.Analytics
	s.jobs = o.Jobs
	s.profiles = o.Profiles
	s.dashboards, s.statsHistory = o.Dashboards, o.StatsHistory
	s.models, s.typeModelMax = o.Models, o.TypeModelMaxSize
	s.posKeys = o.PositionKeys
	if s.posKeys[0] == "" || s.posKeys[1] == "" {
		s.posKeys = [2]string{"lat", "lon"}
	}
	s.prov, s.provLimit, s.provEndpoint = o.Provisioning, o.ProvisioningLimiter, o.ProvisioningEndpoint
	s.fleet = o.Fleet
	s.audit = o.Audit
	s.importer = o.Importer
	s.oidc = o.OIDC
	s.certRotate = o.CertRotation
	s.longPolls = newLongPolls(o.MaxLongPollsPerDevice, nil, nil)
	s.longPolls.refused, s.longPolls.held = s.metrics.longPollRefusals()
	if s.maxMessage <= 0 {
		s.maxMessage = 256 * 1024
	}

	mux := http.NewServeMux()
	paths := http.NewServeMux() // every routed path, any method: tells 405 from 404
	allow := map[string][]string{}
	table := s.routes()
	s.auditRoutes = auditRoutes(table)
	for _, rt := range table {
		mux.Handle(rt.method+" "+rt.pattern(), s.adapt(rt))
		if _, ok := allow[rt.pattern()]; !ok {
			paths.Handle(rt.pattern(), http.NotFoundHandler())
		}
		allow[rt.pattern()] = append(allow[rt.pattern()], rt.method)
	}
	for p, ms := range allow {
		if slices.Contains(ms, "GET") {
			ms = append(ms, "HEAD")
		}
		slices.Sort(ms)
		allow[p] = ms
	}
	// Everything the table does not route: 405 for a known path, else 404.
	fallback := route{path: "(unmatched)", role: rolePublic, h: func(w http.ResponseWriter, r *http.Request) error {
		if _, p := paths.Handler(r); p != "" {
			return errMethodNotAllowed(r.Method, r.URL.Path, strings.Join(allow[p], ", "))
		}
		return core.Errorf(core.KindNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	}}
	mux.Handle("/", s.adapt(fallback))
	if wrapForTest != nil {
		return wrapForTest(mux)
	}
	return mux
}

// wrapForTest, set only by this package's tests, wraps every handler New
// returns: the tests check each response against openapi.json with it.
var wrapForTest func(http.Handler) http.Handler

// statusWriter records whether and with which status a response started.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type ctxKey struct{}

// tokenFrom returns the API token that authenticated the request.
func tokenFrom(ctx context.Context) (store.Token, bool) {
	t, ok := ctx.Value(ctxKey{}).(store.Token)
	return t, ok
}

// adapt wraps a route's handler: metrics, panic recovery, authentication,
// the role check, and turning a returned error into a problem.
func (s *server) adapt(rt route) http.Handler {
	label := rt.pattern()
	if rt.method == "" {
		label = rt.path
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				err := fmt.Errorf("panic: %v\n%s", p, debug.Stack())
				if sw.status == 0 {
					writeError(s.log, sw, r, err)
				} else {
					s.log.ErrorContext(r.Context(), "http: panic after the response started",
						"method", r.Method, "path", r.URL.Path, "err", err)
				}
			}
			s.metrics.observe(label, r.Method, sw.status, time.Since(start))
		}()
		t, err := s.authorize(r, rt)
		if err == nil {
			if t != nil {
				ctx := context.WithValue(r.Context(), ctxKey{}, *t)
				if t.Groups != nil { // scoped (an empty scope sees nothing)
					ctx = context.WithValue(ctx, scopeKey{}, &scope{groups: t.Groups})
				}
				r = r.WithContext(ctx)
			}
			if err = s.checkScope(r, rt); err == nil {
				err = s.serveAudited(rt, sw, r) // runs rt.h (audit.go)
			}
		}
		if err != nil {
			err = retryAfter(w, err)
		}
		if err != nil {
			if k := core.KindOf(err); k == core.KindUnauthorized || k == core.KindForbidden {
				// Refused before its body was read (authorize, s.device):
				// answer without reading it and close, so that a client
				// trickling a large body holds nothing.
				w.Header().Set("Connection", "close")
			}
			if sw.status != 0 {
				s.log.ErrorContext(r.Context(), "http: error after the response started",
					"method", r.Method, "path", r.URL.Path, "err", err)
				return
			}
			writeError(s.log, sw, r, err)
			if w.Header().Get("Connection") == "close" {
				// net/http would still read up to 256 KiB of an unread
				// body before closing; a trickling client would hold
				// the connection. End the read now.
				_ = http.NewResponseController(w).SetReadDeadline(time.Now())
			}
		}
	})
}

// authorize checks the bearer token against the route's role
// requirement and returns the token (nil on a public route).
func (s *server) authorize(r *http.Request, rt route) (*store.Token, error) {
	if rt.role == rolePublic || rt.role == roleDevice {
		return nil, nil // device routes authenticate the device (s.device)
	}
	raw, ok := bearer(r.Header.Get("Authorization"))
	if !ok && r.Header.Get("Authorization") == "" {
		if t, ok, err := s.sessionAuth(r, rt); ok {
			return t, err
		}
	}
	if !ok {
		s.metrics.refused("unauthenticated")
		return nil, core.Errorf(core.KindUnauthorized, "missing bearer token (Authorization: Bearer <token>)")
	}
	t, err := s.reg.AuthenticateToken(r.Context(), raw)
	if err != nil {
		if core.KindOf(err) == core.KindUnauthorized {
			s.metrics.refused("unauthenticated")
		}
		return nil, err
	}
	if err := s.tokenLimits.allow(t, time.Now()); err != nil {
		s.metrics.refused("rate_limited")
		return nil, err
	}
	if t, err = s.principalOf(r.Context(), t); err != nil {
		if core.KindOf(err) == core.KindUnauthorized {
			s.metrics.refused("unauthenticated")
		}
		return nil, err
	}
	if !roleAllows(t.Role, rt.role) {
		s.metrics.refused("role")
		return nil, core.Errorf(core.KindForbidden, "a token with role %q may not %s %s (needs %s)", t.Role, r.Method, rt.pattern(), rt.role)
	}
	return &t, nil
}

// bearer extracts the token of an "Authorization: Bearer <token>" header.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// roleAllows reports whether a token of role have may use a route that
// needs role need.
func roleAllows(have, need string) bool {
	rank := func(role string) int {
		switch role {
		case registry.RoleViewer:
			return 1
		case registry.RoleOperator:
			return 2
		case registry.RoleAdmin:
			return 3
		}
		return 0
	}
	return rank(have) > 0 && rank(have) >= rank(need)
}

// --- JSON ---

// writeJSON sends v as JSON with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store") // some answers hold secrets shown once
	w.WriteHeader(status)
	w.Write(b)
	return nil
}

// marshal encodes v as JSON followed by a newline, leaving <, > and &
// alone (they are not HTML).
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// created sends a 201 with the new resource and its Location.
func created(w http.ResponseWriter, location string, v any) error {
	w.Header().Set("Location", BasePath+location)
	return writeJSON(w, http.StatusCreated, v)
}

func noContent(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// list is the envelope of every list response.
type list[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"nextCursor,omitempty"`
}

func newList[T any](items []T, next string) list[T] {
	if items == nil {
		items = []T{}
	}
	return list[T]{Items: items, NextCursor: next}
}

// decodeJSON reads a required JSON body into v: at most MaxBodyBytes
// (413), Content-Type application/json (415), not empty (400), exactly one
// value whose fields v all knows (400), no object naming a key twice (400).
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeBody(w, r, v, true)
}

// decodeOptionalJSON is decodeJSON for an endpoint whose body may be
// absent; an empty body leaves v as it is.
func decodeOptionalJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeBody(w, r, v, false)
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any, required bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return errTooLarge(MaxBodyBytes)
		}
		return core.Invalid("", "reading the request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if !required {
			return nil
		}
		return core.Invalid("", "a JSON request body is required")
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || !isJSONType(mt) {
		return errUnsupportedMediaType(ct)
	}
	if err := checkDuplicateKeys(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return core.Invalid("", "the request body must hold exactly one JSON value")
	}
	return nil
}

func isJSONType(mt string) bool {
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// jsonError turns a decoding error into a KindInvalid error, naming the
// field when the decoder knows it.
func jsonError(err error) error {
	if _, ok := errors.AsType[*core.Error](err); ok {
		return err // from a custom UnmarshalJSON: already says what is wrong
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return core.Invalid("", "malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if te.Field == "" {
			return core.Invalid("", "the request body must be a JSON object, not %s", te.Value)
		}
		return core.Invalid(te.Field, "%s: expected %s, got a JSON %s", te.Field, jsonKind(te.Type), te.Value)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return core.Invalid("", "malformed JSON: unexpected end of input")
	}
	const unknown = "json: unknown field "
	if msg := err.Error(); strings.HasPrefix(msg, unknown) {
		field, uerr := strconv.Unquote(strings.TrimPrefix(msg, unknown))
		if uerr != nil {
			field = strings.TrimPrefix(msg, unknown)
		}
		return core.Invalid(field, "unknown field %q", field)
	}
	return core.Invalid("", "malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// jsonKind names a Go type the way a JSON client thinks of it.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// parseTime parses an RFC 3339 time of a body field.
func parseTime(field string, s *string) (*time.Time, error) {
	if s == nil {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, *s)
	if err != nil {
		return nil, core.Invalid(field, "%s must be an RFC 3339 time such as 2030-01-02T15:04:05Z", field)
	}
	t = t.UTC()
	return &t, nil
}

// --- query parameters ---

// query is a strictly parsed query string: every parameter must be known
// and given at most once.
type query struct {
	vals map[string]string
	// prefixed holds the parameters that start with an allowed prefix
	// (attr.KEY), keyed by the rest of the name.
	prefixed map[string]string
}

// parseQuery accepts the named parameters and, if prefix is not "",
// parameters named prefix+KEY.
func parseQuery(r *http.Request, prefix string, names ...string) (query, error) {
	q := query{vals: map[string]string{}, prefixed: map[string]string{}}
	for kv := range strings.SplitSeq(r.URL.RawQuery, "&") {
		if kv == "" {
			continue
		}
		rk, rv, _ := strings.Cut(kv, "=")
		k, err1 := url.QueryUnescape(rk)
		v, err2 := url.QueryUnescape(rv)
		if err1 != nil || err2 != nil {
			return q, core.Invalid("", "malformed query string near %q", kv)
		}
		switch {
		case slices.Contains(names, k):
			if _, dup := q.vals[k]; dup {
				return q, core.Invalid(k, "query parameter %q is given more than once", k)
			}
			q.vals[k] = v
		case prefix != "" && strings.HasPrefix(k, prefix):
			key := strings.TrimPrefix(k, prefix)
			if key == "" {
				return q, core.Invalid(k, "query parameter %q needs a key: %sKEY=VALUE", k, prefix)
			}
			if _, dup := q.prefixed[key]; dup {
				return q, core.Invalid(k, "query parameter %q is given more than once", k)
			}
			q.prefixed[key] = v
		default:
			allowed := slices.Clone(names)
			if prefix != "" {
				allowed = append(allowed, prefix+"KEY")
			}
			if len(allowed) == 0 {
				return q, core.Invalid(k, "unknown query parameter %q: this endpoint takes none", k)
			}
			return q, core.Invalid(k, "unknown query parameter %q (known: %s)", k, strings.Join(allowed, ", "))
		}
	}
	return q, nil
}

// limit returns the limit parameter: 1..1000, 0 if absent.
func (q query) limit() (int, error) {
	s, ok := q.vals["limit"]
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1000 {
		return 0, core.Invalid("limit", "limit must be an integer from 1 to 1000")
	}
	return n, nil
}

// boolean returns a true|false parameter, nil if absent.
func (q query) boolean(name string) (*bool, error) {
	s, ok := q.vals[name]
	if !ok {
		return nil, nil
	}
	switch s {
	case "true":
		b := true
		return &b, nil
	case "false":
		b := false
		return &b, nil
	}
	return nil, core.Invalid(name, "%s must be true or false", name)
}

// pageParams parses the limit and cursor parameters of a plain list.
func pageParams(r *http.Request) (after string, limit int, err error) {
	q, err := parseQuery(r, "", "limit", "cursor")
	if err != nil {
		return "", 0, err
	}
	limit, err = q.limit()
	return q.vals["cursor"], limit, err
}

// noParams rejects any query parameter.
func noParams(r *http.Request) error {
	_, err := parseQuery(r, "")
	return err
}

// pathName returns a path segment that names a thing, type, group or
// policy, checked like a name so that a bad one is a 400, not a 404.
func pathName(r *http.Request, param string) (string, error) {
	v := r.PathValue(param)
	if err := core.ValidateName(param, v); err != nil {
		return "", err
	}
	return v, nil
}

// pageByCreation pages a complete list the registry returns unpaged
// (credentials, tokens) in creation order, so that these lists take limit
// and cursor like every other. The cursor is the creation time and id of
// the last item: it stays valid when that item is deleted.
func pageByCreation[T any](items []T, after string, limit int, key func(T) (time.Time, string)) ([]T, string, error) {
	if limit == 0 {
		limit = 100
	}
	less := func(at time.Time, aid string, bt time.Time, bid string) bool {
		if !at.Equal(bt) {
			return at.Before(bt)
		}
		return aid < bid
	}
	slices.SortStableFunc(items, func(a, b T) int {
		at, aid := key(a)
		bt, bid := key(b)
		switch {
		case less(at, aid, bt, bid):
			return -1
		case less(bt, bid, at, aid):
			return 1
		}
		return 0
	})
	if after != "" {
		ms, id, ok := strings.Cut(after, ".")
		n, err := strconv.ParseInt(ms, 10, 64)
		if !ok || err != nil || id == "" {
			return nil, "", core.Invalid("cursor", "cursor is not a nextCursor of this list")
		}
		ct := time.UnixMilli(n)
		i := 0
		for i < len(items) {
			t, id2 := key(items[i])
			if less(ct, id, t.Truncate(time.Millisecond), id2) {
				break
			}
			i++
		}
		items = items[i:]
	}
	if len(items) <= limit {
		return items, "", nil
	}
	items = items[:limit]
	t, id := key(items[limit-1])
	return items, strconv.FormatInt(t.UnixMilli(), 10) + "." + id, nil
}
