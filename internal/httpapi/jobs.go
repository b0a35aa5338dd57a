package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/jobs"
	"github.com/moteiot/mote/internal/store"
)

// Jobs (docs/jobs.md): the operator's side under /jobs and
// /things/{name}/jobs, the device side under /devices/{thing}/jobs.

// jobView is a job in API answers.
type jobView struct {
	JobID           string          `json:"jobId"`
	Description     string          `json:"description,omitempty"`
	Status          string          `json:"status"`
	TargetSelection string          `json:"targetSelection"`
	Targets         jobs.Targets    `json:"targets"`
	Document        json.RawMessage `json:"document,omitempty"`
	DocumentSource  string          `json:"documentSource,omitempty"`
	Rollout         *jobs.Rollout   `json:"rollout,omitempty"`
	Abort           *jobs.Abort     `json:"abort,omitempty"`
	Timeouts        *jobs.Timeouts  `json:"timeouts,omitempty"`
	Retry           *jobs.Retry     `json:"retry,omitempty"`
	ReasonCode      string          `json:"reasonCode,omitempty"`
	Comment         string          `json:"comment,omitempty"`
	Released        int64           `json:"released"`
	CreatedAt       time.Time       `json:"createdAt"`
	UpdatedAt       time.Time       `json:"updatedAt"`
	CompletedAt     *time.Time      `json:"completedAt,omitempty"`
	Counts          map[string]int  `json:"counts,omitempty"`
}

func jobViewOf(i jobs.Info) jobView {
	return jobView{JobID: i.JobID, Description: i.Description, Status: i.Status, TargetSelection: i.TargetSelection,
		Targets: i.Targets, Document: i.Document, DocumentSource: i.DocumentSource, Rollout: i.Rollout, Abort: i.Abort,
		Timeouts: i.Timeouts, Retry: i.Retry, ReasonCode: i.ReasonCode, Comment: i.Comment, Released: i.Released,
		CreatedAt: i.CreatedAt, UpdatedAt: i.UpdatedAt, CompletedAt: i.CompletedAt, Counts: i.Counts}
}

// executionView is a job execution in API answers.
type executionView struct {
	JobID           string            `json:"jobId"`
	ThingName       string            `json:"thingName"`
	Status          string            `json:"status"`
	StatusDetails   map[string]string `json:"statusDetails,omitempty"`
	QueuedAt        *time.Time        `json:"queuedAt,omitempty"`
	StartedAt       *time.Time        `json:"startedAt,omitempty"`
	LastUpdatedAt   time.Time         `json:"lastUpdatedAt"`
	TimeoutAt       *time.Time        `json:"timeoutAt,omitempty"`
	VersionNumber   int64             `json:"versionNumber"`
	ExecutionNumber int64             `json:"executionNumber"`
	Retries         int               `json:"retries"`
}

func executionViews(list []store.JobExecution) []executionView {
	out := make([]executionView, 0, len(list))
	for _, e := range list {
		out = append(out, executionView{JobID: e.JobID, ThingName: e.Thing, Status: e.Status, StatusDetails: e.StatusDetails,
			QueuedAt: e.QueuedAt, StartedAt: e.StartedAt, LastUpdatedAt: e.LastUpdatedAt, TimeoutAt: e.TimeoutAt,
			VersionNumber: e.VersionNumber, ExecutionNumber: e.ExecutionNumber, Retries: e.Retries})
	}
	return out
}

// cancelJobRequest is the optional body of POST /jobs/{id}/cancel.
type cancelJobRequest struct {
	Force      bool   `json:"force"`
	ReasonCode string `json:"reasonCode"`
	Comment    string `json:"comment"`
}

func (s *server) jobService() (*jobs.Service, error) {
	if s.jobs == nil {
		return nil, core.Errorf(core.KindUnavailable, "jobs are not enabled on this server")
	}
	return s.jobs, nil
}

func jobID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := core.ValidateName("id", id); err != nil {
		return "", err
	}
	return id, nil
}

func (s *server) createJob(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	svc, err := s.jobService()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := decodeJSON(w, r, &raw); err != nil {
		return err
	}
	sp, err := jobs.ParseSpec(raw, 0)
	if err != nil {
		return err
	}
	if err := s.scopeJobTargets(r.Context(), &sp.Targets); err != nil {
		return err
	}
	info, err := svc.Create(r.Context(), sp)
	if err != nil {
		return err
	}
	return created(w, "/jobs/"+info.JobID, jobViewOf(info))
}

func (s *server) listJobs(w http.ResponseWriter, r *http.Request) error {
	cursor, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	svc, err := s.jobService()
	if err != nil {
		return err
	}
	fetch := func(after string, n int) ([]jobs.Info, error) {
		return svc.List(r.Context(), after, n)
	}
	if sc := scopeFrom(r.Context()); sc != nil { // only the jobs of the scope's things
		fetch = scopedFetch(fetch, func(i jobs.Info) string { return i.JobID }, func(i jobs.Info) (bool, error) {
			return s.jobInScope(r.Context(), sc, i.Targets)
		})
	}
	list, next, err := pageAfter(cursor, limit, fetch, func(i jobs.Info) string { return i.JobID })
	if err != nil {
		return err
	}
	views := make([]jobView, 0, len(list))
	for _, i := range list {
		views = append(views, jobViewOf(i))
	}
	return writeJSON(w, http.StatusOK, newList(views, next))
}

func (s *server) getJob(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	svc, err := s.jobService()
	if err != nil {
		return err
	}
	id, err := jobID(r)
	if err != nil {
		return err
	}
	if err := s.needJobInScope(r.Context(), svc, id); err != nil {
		return err
	}
	info, err := svc.Get(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, jobViewOf(info))
}

func (s *server) cancelJob(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	svc, err := s.jobService()
	if err != nil {
		return err
	}
	id, err := jobID(r)
	if err != nil {
		return err
	}
	if err := s.needJobInScope(r.Context(), svc, id); err != nil {
		return err
	}
	var req cancelJobRequest
	if err := decodeOptionalJSON(w, r, &req); err != nil {
		return err
	}
	if len(req.ReasonCode) > 128 || len(req.Comment) > 2028 {
		return core.Invalid("comment", "reasonCode is at most 128 bytes and comment at most 2028")
	}
	info, err := svc.Cancel(r.Context(), id, req.Force, req.ReasonCode, req.Comment)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, jobViewOf(info))
}

func (s *server) deleteJob(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r, "", "force")
	if err != nil {
		return err
	}
	force, err := q.boolean("force")
	if err != nil {
		return err
	}
	svc, err := s.jobService()
	if err != nil {
		return err
	}
	id, err := jobID(r)
	if err != nil {
		return err
	}
	if err := s.needJobInScope(r.Context(), svc, id); err != nil {
		return err
	}
	if err := svc.Delete(r.Context(), id, force != nil && *force); err != nil {
		return err
	}
	return noContent(w)
}

func (s *server) listJobExecutions(w http.ResponseWriter, r *http.Request) error {
	cursor, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	svc, err := s.jobService()
	if err != nil {
		return err
	}
	id, err := jobID(r)
	if err != nil {
		return err
	}
	if err := s.needJobInScope(r.Context(), svc, id); err != nil {
		return err
	}
	list, next, err := pageAfter(cursor, limit, func(after string, n int) ([]store.JobExecution, error) {
		return svc.Executions(r.Context(), id, after, n)
	}, func(e store.JobExecution) string { return e.Thing })
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, newList(executionViews(list), next))
}

func (s *server) listThingJobs(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r, "", "limit")
	if err != nil {
		return err
	}
	limit, err := q.limit()
	if err != nil {
		return err
	}
	svc, err := s.jobService()
	if err != nil {
		return err
	}
	thing, err := pathName(r, "name")
	if err != nil {
		return err
	}
	if _, err := s.reg.GetThing(r.Context(), thing); err != nil {
		return err
	}
	list, err := svc.ThingExecutions(r.Context(), thing, limit)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, newList(executionViews(list), ""))
}

// --- the device side: the AWS IoT Jobs device API over HTTP ---

// deviceJob answers a device's job request: 200 with the AWS answer, or
// the rejection's code and message as a problem (404 ResourceNotFound,
// 409 VersionMismatch, InvalidStateTransition and TerminalStateReached,
// 429 RequestThrottled, 400 otherwise).
func (s *server) deviceJob(w http.ResponseWriter, r *http.Request, op, id string, body []byte) error {
	svc, err := s.jobService()
	if err != nil {
		return err
	}
	answer, rej := svc.Device(r.Context(), jobs.DeviceRequest{Thing: deviceIdentity(r).Thing, Op: op, JobID: id, Payload: body})
	if rej != nil {
		return core.Errorf(rej.Kind(), "%s: %s", rej.Code, rej.Message)
	}
	return writeJSON(w, http.StatusOK, answer)
}

func (s *server) deviceJobBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if err := noParams(r); err != nil {
		return nil, err
	}
	limit := int64(s.maxMessage)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, errTooLarge(limit)
		}
		return nil, core.Invalid("", "reading the request body: %v", err)
	}
	if len(body) > 0 {
		ct := r.Header.Get("Content-Type")
		if mt, _, err := mime.ParseMediaType(ct); err != nil || !isJSONType(mt) {
			return nil, errUnsupportedMediaType(ct)
		}
	}
	return body, nil
}

func (s *server) deviceGetPendingJobs(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	return s.deviceJob(w, r, jobs.OpGetPending, "", nil)
}

func (s *server) deviceStartNextJob(w http.ResponseWriter, r *http.Request) error {
	body, err := s.deviceJobBody(w, r)
	if err != nil {
		return err
	}
	return s.deviceJob(w, r, jobs.OpStartNext, "", body)
}

func (s *server) deviceDescribeJob(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r, "", "includeJobDocument", "executionNumber")
	if err != nil {
		return err
	}
	var req jobs.DescribeRequest
	if req.IncludeJobDocument, err = q.boolean("includeJobDocument"); err != nil {
		return err
	}
	if v, ok := q.vals["executionNumber"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return core.Invalid("executionNumber", "executionNumber must be an integer")
		}
		req.ExecutionNumber = &n
	}
	body, _ := json.Marshal(req)
	return s.deviceJob(w, r, jobs.OpDescribe, r.PathValue("jobId"), body)
}

func (s *server) deviceUpdateJob(w http.ResponseWriter, r *http.Request) error {
	body, err := s.deviceJobBody(w, r)
	if err != nil {
		return err
	}
	return s.deviceJob(w, r, jobs.OpUpdate, r.PathValue("jobId"), body)
}
