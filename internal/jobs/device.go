package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/store"
)

// The device side of jobs, AWS IoT Jobs over MQTT (and the HTTP device
// API): topics, request and response shapes, error codes.

// Topic prefixes: the same API under both.
const (
	AWSPrefix  = "$aws/things/"
	MotePrefix = "$mote/things/"
)

// Filters are the bus subscriptions of the device API.
var Filters = []string{AWSPrefix + "+/jobs/#", MotePrefix + "+/jobs/#"}

// NextJobID names the next pending execution in {jobId}/get.
const NextJobID = "$next"

// Error codes of a rejected request (AWS IoT Jobs).
const (
	CodeInvalidTopic           = "InvalidTopic"
	CodeInvalidJSON            = "InvalidJson"
	CodeInvalidRequest         = "InvalidRequest"
	CodeInvalidStateTransition = "InvalidStateTransition"
	CodeResourceNotFound       = "ResourceNotFound"
	CodeVersionMismatch        = "VersionMismatch"
	CodeInternalError          = "InternalError"
	CodeRequestThrottled       = "RequestThrottled"
	CodeTerminalStateReached   = "TerminalStateReached"
)

// Operations of the device API.
const (
	OpGetPending = "get"
	OpStartNext  = "start-next"
	OpDescribe   = "describe" // {jobId}/get
	OpUpdate     = "update"   // {jobId}/update
)

// MaxClientToken bounds a clientToken, as in AWS.
const MaxClientToken = 64

// DeviceRequest is one request of a device, from a topic or an HTTP route.
type DeviceRequest struct {
	Thing   string
	Op      string
	JobID   string // OpDescribe, OpUpdate
	Payload []byte
}

// ParseTopic splits a request topic
//
//	{prefix}{thing}/jobs/get
//	{prefix}{thing}/jobs/start-next
//	{prefix}{thing}/jobs/{jobId}/get
//	{prefix}{thing}/jobs/{jobId}/update
//
// Anything else (responses, notifications) is not a request (ok false).
func ParseTopic(topic string) (prefix string, r DeviceRequest, ok bool) {
	switch {
	case strings.HasPrefix(topic, AWSPrefix):
		prefix = AWSPrefix
	case strings.HasPrefix(topic, MotePrefix):
		prefix = MotePrefix
	default:
		return "", r, false
	}
	rest := topic[len(prefix):]
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return "", r, false
	}
	r.Thing, rest = rest[:i], rest[i+1:]
	rest, found := strings.CutPrefix(rest, "jobs/")
	if !found {
		return "", r, false
	}
	switch parts := strings.Split(rest, "/"); {
	case len(parts) == 1 && parts[0] == "get":
		r.Op = OpGetPending
	case len(parts) == 1 && parts[0] == "start-next":
		r.Op = OpStartNext
	case len(parts) == 2 && parts[0] != "" && parts[1] == "get":
		r.Op, r.JobID = OpDescribe, parts[0]
	case len(parts) == 2 && parts[0] != "" && parts[1] == "update":
		r.Op, r.JobID = OpUpdate, parts[0]
	default:
		return "", r, false
	}
	return prefix, r, true
}

// ResponseTopic is where the answer to a request goes: the request topic
// with /accepted or /rejected.
func ResponseTopic(prefix string, r DeviceRequest, accepted bool) string {
	t := prefix + r.Thing + "/jobs/"
	switch r.Op {
	case OpGetPending:
		t += "get"
	case OpStartNext:
		t += "start-next"
	case OpDescribe:
		t += r.JobID + "/get"
	default:
		t += r.JobID + "/update"
	}
	if accepted {
		return t + "/accepted"
	}
	return t + "/rejected"
}

// NotifyTopic and NotifyNextTopic are where a thing hears of changes to
// its pending executions.
func NotifyTopic(prefix, thing string) string     { return prefix + thing + "/jobs/notify" }
func NotifyNextTopic(prefix, thing string) string { return prefix + thing + "/jobs/notify-next" }

// Request bodies. Fields a request does not use are ignored, as AWS does.

// UpdateRequest is the body of {jobId}/update.
type UpdateRequest struct {
	Status                   string            `json:"status"`
	StatusDetails            map[string]string `json:"statusDetails,omitempty"`
	ExpectedVersion          *int64            `json:"expectedVersion,omitempty"`
	ExecutionNumber          *int64            `json:"executionNumber,omitempty"`
	IncludeJobExecutionState bool              `json:"includeJobExecutionState,omitempty"`
	IncludeJobDocument       bool              `json:"includeJobDocument,omitempty"`
	StepTimeoutInMinutes     *int64            `json:"stepTimeoutInMinutes,omitempty"`
	ClientToken              string            `json:"clientToken,omitempty"`
}

// DescribeRequest is the body of {jobId}/get.
type DescribeRequest struct {
	ExecutionNumber    *int64 `json:"executionNumber,omitempty"`
	IncludeJobDocument *bool  `json:"includeJobDocument,omitempty"` // default true
	ClientToken        string `json:"clientToken,omitempty"`
}

// StartNextRequest is the body of start-next.
type StartNextRequest struct {
	StatusDetails        map[string]string `json:"statusDetails,omitempty"`
	StepTimeoutInMinutes *int64            `json:"stepTimeoutInMinutes,omitempty"`
	ClientToken          string            `json:"clientToken,omitempty"`
}

// GetPendingRequest is the body of get.
type GetPendingRequest struct {
	ClientToken string `json:"clientToken,omitempty"`
}

// RequestError is a rejection: an AWS error code and a message.
type RequestError struct {
	Code    string
	Message string
}

func (e *RequestError) Error() string { return e.Code + ": " + e.Message }

func reqErr(code, msg string) *RequestError { return &RequestError{Code: code, Message: msg} }

// decodeRequest decodes a request body into v; an empty body is {}.
func decodeRequest(payload []byte, v any) *RequestError {
	if len(bytes.TrimSpace(payload)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return reqErr(CodeInvalidRequest, te.Field+" has the wrong type")
		}
		return reqErr(CodeInvalidJSON, "the payload is not a JSON object")
	}
	if dec.More() {
		return reqErr(CodeInvalidJSON, "the payload must be one JSON object")
	}
	return nil
}

// clientTokenOf reads just the clientToken of a payload, for a rejection
// of a request that could not be parsed.
func clientTokenOf(payload []byte) string {
	var t struct {
		ClientToken string `json:"clientToken"`
	}
	_ = json.Unmarshal(payload, &t)
	if len(t.ClientToken) > MaxClientToken {
		return ""
	}
	return t.ClientToken
}

func checkToken(tok string) *RequestError {
	if len(tok) > MaxClientToken {
		return reqErr(CodeInvalidRequest, "clientToken is longer than 64 characters")
	}
	return nil
}

func checkDetails(d map[string]string) *RequestError {
	if len(d) > MaxStatusDetails {
		return reqErr(CodeInvalidRequest, "statusDetails has more than 10 entries")
	}
	for k, v := range d {
		if k == "" || len(k) > 128 || len(v) > MaxDetailLength {
			return reqErr(CodeInvalidRequest, "a statusDetails key must be 1 to 128 characters and a value at most 1024")
		}
	}
	return nil
}

func checkStep(m *int64) *RequestError {
	if m != nil && (*m < 1 || *m > MaxInProgressMinute) {
		return reqErr(CodeInvalidRequest, "stepTimeoutInMinutes must be 1 to 10080")
	}
	return nil
}

// ParseUpdate decodes and checks an update request.
func ParseUpdate(payload []byte) (UpdateRequest, *RequestError) {
	var u UpdateRequest
	if e := decodeRequest(payload, &u); e != nil {
		return u, e
	}
	if e := checkToken(u.ClientToken); e != nil {
		return u, e
	}
	switch u.Status {
	case store.JobExecInProgress, store.JobExecSucceeded, store.JobExecFailed, store.JobExecRejected:
	case "":
		return u, reqErr(CodeInvalidRequest, "status is required")
	default:
		return u, reqErr(CodeInvalidRequest, "status must be IN_PROGRESS, SUCCEEDED, FAILED or REJECTED")
	}
	if e := checkDetails(u.StatusDetails); e != nil {
		return u, e
	}
	if e := checkStep(u.StepTimeoutInMinutes); e != nil {
		return u, e
	}
	return u, nil
}

// Response bodies (times are Unix seconds, as in AWS).

// ExecutionJSON is a job execution as a device sees it.
type ExecutionJSON struct {
	JobID                            string            `json:"jobId"`
	ThingName                        string            `json:"thingName"`
	JobDocument                      json.RawMessage   `json:"jobDocument,omitempty"`
	Status                           string            `json:"status"`
	StatusDetails                    map[string]string `json:"statusDetails,omitempty"`
	QueuedAt                         int64             `json:"queuedAt"`
	StartedAt                        int64             `json:"startedAt,omitempty"`
	LastUpdatedAt                    int64             `json:"lastUpdatedAt"`
	ApproximateSecondsBeforeTimedOut int64             `json:"approximateSecondsBeforeTimedOut,omitempty"`
	VersionNumber                    int64             `json:"versionNumber"`
	ExecutionNumber                  int64             `json:"executionNumber"`
}

// SummaryJSON is an entry of the pending lists.
type SummaryJSON struct {
	JobID           string `json:"jobId"`
	QueuedAt        int64  `json:"queuedAt"`
	StartedAt       int64  `json:"startedAt,omitempty"`
	LastUpdatedAt   int64  `json:"lastUpdatedAt"`
	VersionNumber   int64  `json:"versionNumber"`
	ExecutionNumber int64  `json:"executionNumber"`
}

// StateJSON is an execution's state in update answers and rejections.
type StateJSON struct {
	Status        string            `json:"status"`
	StatusDetails map[string]string `json:"statusDetails,omitempty"`
	VersionNumber int64             `json:"versionNumber"`
}

// ErrorJSON is the body of a /rejected answer.
type ErrorJSON struct {
	Code           string     `json:"code"`
	Message        string     `json:"message"`
	ClientToken    string     `json:"clientToken,omitempty"`
	Timestamp      int64      `json:"timestamp"`
	ExecutionState *StateJSON `json:"executionState,omitempty"`
}

// PendingJSON is the answer to get.
type PendingJSON struct {
	InProgressJobs []SummaryJSON `json:"inProgressJobs"`
	QueuedJobs     []SummaryJSON `json:"queuedJobs"`
	Timestamp      int64         `json:"timestamp"`
	ClientToken    string        `json:"clientToken,omitempty"`
}

// ExecutionAnswerJSON answers start-next and {jobId}/get (no execution:
// nothing pending).
type ExecutionAnswerJSON struct {
	Execution   *ExecutionJSON `json:"execution,omitempty"`
	Timestamp   int64          `json:"timestamp"`
	ClientToken string         `json:"clientToken,omitempty"`
}

// UpdateAnswerJSON answers {jobId}/update.
type UpdateAnswerJSON struct {
	ExecutionState *StateJSON      `json:"executionState,omitempty"`
	JobDocument    json.RawMessage `json:"jobDocument,omitempty"`
	Timestamp      int64           `json:"timestamp"`
	ClientToken    string          `json:"clientToken,omitempty"`
}

// NotifyJSON is published on notify.
type NotifyJSON struct {
	Timestamp int64                    `json:"timestamp"`
	Jobs      map[string][]SummaryJSON `json:"jobs"`
}

// NotifyNextJSON is published on notify-next.
type NotifyNextJSON struct {
	Timestamp int64          `json:"timestamp"`
	Execution *ExecutionJSON `json:"execution,omitempty"`
}

func unix(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return t.Unix()
}

func summaryOf(e store.JobExecution) SummaryJSON {
	return SummaryJSON{JobID: e.JobID, QueuedAt: unix(e.QueuedAt), StartedAt: unix(e.StartedAt),
		LastUpdatedAt: e.LastUpdatedAt.Unix(), VersionNumber: e.VersionNumber, ExecutionNumber: e.ExecutionNumber}
}

func stateOf(e store.JobExecution) *StateJSON {
	return &StateJSON{Status: e.Status, StatusDetails: e.StatusDetails, VersionNumber: e.VersionNumber}
}

func executionOf(e store.JobExecution, doc json.RawMessage, now time.Time) *ExecutionJSON {
	x := &ExecutionJSON{JobID: e.JobID, ThingName: e.Thing, JobDocument: doc, Status: e.Status, StatusDetails: e.StatusDetails,
		QueuedAt: unix(e.QueuedAt), StartedAt: unix(e.StartedAt), LastUpdatedAt: e.LastUpdatedAt.Unix(),
		VersionNumber: e.VersionNumber, ExecutionNumber: e.ExecutionNumber}
	if e.TimeoutAt != nil && e.Status == store.JobExecInProgress {
		x.ApproximateSecondsBeforeTimedOut = max(int64(e.TimeoutAt.Sub(now)/time.Second), 1)
	}
	return x
}
