package httpapi

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/dashboards"
)

// Dashboards (docs/dashboards.md): documents of widgets the console
// composes, versioned with an ETag ("N", the version) and If-Match.

// dashboardOut is a dashboard in an answer.
type dashboardOut struct {
	Name      string              `json:"name"`
	Title     string              `json:"title"`
	Widgets   []dashboards.Widget `json:"widgets"`
	Version   int64               `json:"version"`
	CreatedAt time.Time           `json:"createdAt"`
	UpdatedAt time.Time           `json:"updatedAt"`
}

// dashboardSummary is a dashboard in a list: no widgets, their count.
type dashboardSummary struct {
	Name      string    `json:"name"`
	Title     string    `json:"title"`
	Widgets   int       `json:"widgets"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func dashboardWire(d dashboards.Dashboard) dashboardOut {
	ws := d.Widgets
	if ws == nil {
		ws = []dashboards.Widget{}
	}
	return dashboardOut{Name: d.Name, Title: d.Title, Widgets: ws, Version: d.Version, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
}

func dashboardETag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

func (s *server) dashboardService() (*dashboards.Service, error) {
	if s.dashboards == nil {
		return nil, core.Errorf(core.KindUnavailable, "dashboards are not enabled on this server")
	}
	return s.dashboards, nil
}

// readDashboard reads a dashboard document: larger than the setting is
// 413 before it is parsed.
func (s *server) readDashboard(w http.ResponseWriter, r *http.Request, ds *dashboards.Service) ([]byte, error) {
	limit := int64(ds.Limits().MaxSize)
	if r.ContentLength > limit {
		return nil, ds.TooLarge(r.ContentLength)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, ds.TooLarge(-1)
		}
		return nil, core.Invalid("", "reading the request body: %v", err)
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || !isJSONType(mt) {
		return nil, errUnsupportedMediaType(ct)
	}
	return body, nil
}

// ifMatch reads If-Match: "N" (or W/"N") is version N, * or none is 0
// (any version).
func ifMatch(r *http.Request) (int64, error) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" || h == "*" {
		return 0, nil
	}
	v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(h, "W/"), `"`), 10, 64)
	if err != nil || v < 1 {
		return 0, core.Invalid("If-Match", "If-Match must be the ETag of the dashboard, such as \"3\"")
	}
	return v, nil
}

// preconditionFailed turns a stale-version conflict into a 412.
func preconditionFailed(err error) error {
	if errors.Is(err, dashboards.ErrStale) {
		return &httpError{status: http.StatusPreconditionFailed, kind: "precondition_failed",
			msg: "the dashboard has changed since that version: get it again (its ETag) and reapply the change"}
	}
	return err
}

func writeDashboard(w http.ResponseWriter, status int, d dashboards.Dashboard) error {
	w.Header().Set("ETag", dashboardETag(d.Version))
	if status == http.StatusCreated {
		w.Header().Set("Location", BasePath+"/dashboards/"+d.Name)
	}
	return writeJSON(w, status, dashboardWire(d))
}

func (s *server) createDashboard(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.dashboardService()
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	body, err := s.readDashboard(w, r, ds)
	if err != nil {
		return err
	}
	doc, err := ds.Parse(body)
	if err != nil {
		return err
	}
	if doc.Version != 0 {
		return core.Invalid("version", "a new dashboard has no version yet")
	}
	out, err := ds.Create(r.Context(), doc)
	if err != nil {
		return err
	}
	return writeDashboard(w, http.StatusCreated, out)
}

func (s *server) listDashboards(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.dashboardService()
	if err != nil {
		return err
	}
	after, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	list, next, err := pageAfter(after, limit, func(after string, n int) ([]dashboards.Dashboard, error) {
		return ds.List(r.Context(), after, n)
	}, func(d dashboards.Dashboard) string { return d.Name })
	if err != nil {
		return err
	}
	items := make([]dashboardSummary, len(list))
	for i, d := range list {
		items[i] = dashboardSummary{Name: d.Name, Title: d.Title, Widgets: len(d.Widgets), Version: d.Version, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
	}
	return writeJSON(w, http.StatusOK, newList(items, next))
}

func (s *server) dashboardByName(r *http.Request) (*dashboards.Service, string, error) {
	ds, err := s.dashboardService()
	if err != nil {
		return nil, "", err
	}
	if err := noParams(r); err != nil {
		return nil, "", err
	}
	name, err := pathName(r, "name")
	return ds, name, err
}

func (s *server) getDashboard(w http.ResponseWriter, r *http.Request) error {
	ds, name, err := s.dashboardByName(r)
	if err != nil {
		return err
	}
	out, err := ds.Get(r.Context(), name)
	if err != nil {
		return err
	}
	return writeDashboard(w, http.StatusOK, out)
}

// replaceDashboard is PUT /dashboards/{name}: If-Match (or "version" in
// the body) makes it conditional.
func (s *server) replaceDashboard(w http.ResponseWriter, r *http.Request) error {
	ds, name, err := s.dashboardByName(r)
	if err != nil {
		return err
	}
	version, err := ifMatch(r)
	if err != nil {
		return err
	}
	body, err := s.readDashboard(w, r, ds)
	if err != nil {
		return err
	}
	doc, err := ds.ParseNamed(body, name)
	if err != nil {
		return err
	}
	if doc.Version != 0 {
		if version != 0 && version != doc.Version {
			return core.Invalid("version", "version %d in the body differs from If-Match %d", doc.Version, version)
		}
		version = doc.Version
	}
	out, err := ds.Update(r.Context(), doc, version)
	if err != nil {
		return preconditionFailed(err)
	}
	return writeDashboard(w, http.StatusOK, out)
}

func (s *server) deleteDashboard(w http.ResponseWriter, r *http.Request) error {
	ds, name, err := s.dashboardByName(r)
	if err != nil {
		return err
	}
	version, err := ifMatch(r)
	if err != nil {
		return err
	}
	if err := ds.Delete(r.Context(), name, version); err != nil {
		return preconditionFailed(err)
	}
	return noContent(w)
}

// statsHistory is the body of GET /stats/history.
type statsHistory struct {
	Window string              `json:"window"`
	Points []statsHistoryPoint `json:"points"`
}

type statsHistoryPoint struct {
	Time              time.Time `json:"time"`
	Messages          int64     `json:"messages"`
	MessagesPerSecond float64   `json:"messagesPerSecond"`
	Connected         int       `json:"connected"`
	ActiveAlarms      int       `json:"activeAlarms"`
}

// historyWindows are the windows GET /stats/history answers.
var historyWindows = map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour}

func (s *server) getStatsHistory(w http.ResponseWriter, r *http.Request) error {
	if s.statsHistory == nil {
		return core.Errorf(core.KindUnavailable, "the stats history is not enabled on this server")
	}
	q, err := parseQuery(r, "", "window")
	if err != nil {
		return err
	}
	name := q.vals["window"]
	if name == "" {
		name = "1h"
	}
	window, ok := historyWindows[name]
	if !ok {
		return core.Invalid("window", "window must be 1h or 24h, not %q", name)
	}
	pts, err := dashboards.History(r.Context(), s.statsHistory, time.Now(), window)
	if err != nil {
		return err
	}
	out := statsHistory{Window: name, Points: make([]statsHistoryPoint, len(pts))}
	for i, p := range pts {
		out.Points[i] = statsHistoryPoint{Time: p.Time, Messages: p.Messages, MessagesPerSecond: p.MessagesPerSecond, Connected: p.Connected, ActiveAlarms: p.ActiveAlarms}
	}
	return writeJSON(w, http.StatusOK, out)
}
