package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/moteiot/mote/internal/core"
)

// Limits of a job's configuration (as in AWS IoT Jobs where it has them).
const (
	MaxDescription      = 2028
	MaxThingsInRequest  = 10_000 // names listed in targets.things
	MaxGroupsInRequest  = 100
	MaxQueryLength      = 4096
	MaxPerMinute        = 1000
	MaxInProgressMinute = 10080 // 7 days
	MaxRetries          = 10
	MaxAbortCriteria    = 4
	MaxStatusDetails    = 10
	MaxDetailLength     = 1024
)

// Target selections.
const (
	Snapshot   = "snapshot"
	Continuous = "continuous"
)

// Failure types of abort and retry criteria.
const (
	FailureFailed   = "FAILED"
	FailureRejected = "REJECTED"
	FailureTimedOut = "TIMED_OUT"
	FailureAll      = "ALL"
)

// Spec is a job as an operator describes it: the body of POST
// /api/v1/jobs, kept with the job.
type Spec struct {
	JobID           string          `json:"jobId"`
	Description     string          `json:"description,omitempty"`
	Targets         Targets         `json:"targets"`
	Document        json.RawMessage `json:"document,omitempty"`
	DocumentSource  string          `json:"documentSource,omitempty"`
	TargetSelection string          `json:"targetSelection,omitempty"`
	Rollout         *Rollout        `json:"rollout,omitempty"`
	Abort           *Abort          `json:"abort,omitempty"`
	Timeouts        *Timeouts       `json:"timeouts,omitempty"`
	Retry           *Retry          `json:"retry,omitempty"`
}

// Targets select the things of a job; a thing selected several ways gets
// one execution.
type Targets struct {
	Things []string `json:"things,omitempty"`
	Groups []string `json:"groups,omitempty"`
	Query  string   `json:"query,omitempty"`
}

// Rollout paces the release of executions. Without it every execution is
// released at once.
type Rollout struct {
	MaximumPerMinute int              `json:"maximumPerMinute,omitempty"`
	ExponentialRate  *ExponentialRate `json:"exponentialRate,omitempty"`
}

// ExponentialRate starts at BaseRatePerMinute and multiplies the rate by
// IncrementFactor each time RateIncreaseCriteria is met again, up to
// Rollout.MaximumPerMinute.
type ExponentialRate struct {
	BaseRatePerMinute    int                  `json:"baseRatePerMinute"`
	IncrementFactor      float64              `json:"incrementFactor"`
	RateIncreaseCriteria RateIncreaseCriteria `json:"rateIncreaseCriteria"`
}

// RateIncreaseCriteria: exactly one of the two.
type RateIncreaseCriteria struct {
	NumberOfNotifiedThings  int `json:"numberOfNotifiedThings,omitempty"`
	NumberOfSucceededThings int `json:"numberOfSucceededThings,omitempty"`
}

// Abort cancels the job when one of its criteria is met.
type Abort struct {
	Criteria []AbortCriterion `json:"criteria"`
}

// AbortCriterion: once MinNumberOfExecutedThings executions have ended,
// the job is canceled when ThresholdPercentage of them ended with
// FailureType.
type AbortCriterion struct {
	FailureType               string  `json:"failureType"`
	Action                    string  `json:"action,omitempty"` // CANCEL, the only one
	ThresholdPercentage       float64 `json:"thresholdPercentage"`
	MinNumberOfExecutedThings int     `json:"minNumberOfExecutedThings"`
}

// Timeouts bound how long an execution may stay IN_PROGRESS.
type Timeouts struct {
	InProgressMinutes int `json:"inProgressMinutes"`
}

// Retry requeues failed executions.
type Retry struct {
	Criteria []RetryCriterion `json:"criteria"`
}

// RetryCriterion: an execution that ends with FailureType is queued
// again, at most NumberOfRetries times.
type RetryCriterion struct {
	FailureType     string `json:"failureType"`
	NumberOfRetries int    `json:"numberOfRetries"`
}

var jobIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// ParseSpec decodes and checks a job request: unknown fields, a field
// named twice or trailing data are refused, and every error names its
// field. maxDocument bounds the job document (0: 32 KiB).
func ParseSpec(data []byte, maxDocument int) (Spec, error) {
	var sp Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sp); err != nil {
		return Spec{}, jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Spec{}, core.Invalid("", "the body must be one JSON object")
	}
	return sp, sp.Validate(maxDocument)
}

func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return core.Invalid(te.Field, "%s must be a JSON %s", te.Field, te.Type.Kind())
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		f := strings.Trim(msg, `"`)
		return core.Invalid(f, "unknown field %q", f)
	}
	return core.Invalid("", "invalid JSON: %v", err)
}

// Validate checks a spec and fills in its defaults (targetSelection
// snapshot, abort action CANCEL).
func (sp *Spec) Validate(maxDocument int) error {
	if maxDocument <= 0 {
		maxDocument = 32 * 1024
	}
	if !jobIDPattern.MatchString(sp.JobID) {
		return core.Invalid("jobId", "jobId must be 1 to 64 letters, digits, '-' or '_'")
	}
	if len(sp.Description) > MaxDescription {
		return core.Invalid("description", "description is longer than %d bytes", MaxDescription)
	}
	t := sp.Targets
	if len(t.Things) == 0 && len(t.Groups) == 0 && t.Query == "" {
		return core.Invalid("targets", "targets needs things, groups or a query")
	}
	if len(t.Things) > MaxThingsInRequest {
		return core.Invalid("targets.things", "targets.things lists more than %d things", MaxThingsInRequest)
	}
	for _, n := range t.Things {
		if err := core.ValidateName("targets.things", n); err != nil {
			return err
		}
	}
	if len(t.Groups) > MaxGroupsInRequest {
		return core.Invalid("targets.groups", "targets.groups lists more than %d groups", MaxGroupsInRequest)
	}
	for _, n := range t.Groups {
		if err := core.ValidateName("targets.groups", n); err != nil {
			return err
		}
	}
	if len(t.Query) > MaxQueryLength {
		return core.Invalid("targets.query", "targets.query is longer than %d bytes", MaxQueryLength)
	}
	switch sp.TargetSelection {
	case "":
		sp.TargetSelection = Snapshot
	case Snapshot, Continuous:
	default:
		return core.Invalid("targetSelection", "targetSelection must be snapshot or continuous")
	}
	switch {
	case len(sp.Document) > 0 && sp.DocumentSource != "":
		return core.Invalid("document", "give document or documentSource, not both")
	case len(sp.Document) == 0 && sp.DocumentSource == "":
		return core.Invalid("document", "document (a JSON object) or documentSource is required")
	case len(sp.Document) > 0:
		if len(sp.Document) > maxDocument {
			return core.Errorf(core.KindTooLarge, "document is larger than %d bytes (--job-max-document-size)", maxDocument)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(sp.Document, &obj); err != nil || obj == nil {
			return core.Invalid("document", "document must be a JSON object")
		}
	default:
		name, ok := strings.CutPrefix(sp.DocumentSource, "artifact:")
		if !ok || core.ValidateName("documentSource", name) != nil {
			return core.Invalid("documentSource", `documentSource must be "artifact:NAME" (an artifact to install)`)
		}
	}
	if r := sp.Rollout; r != nil {
		if r.MaximumPerMinute < 0 || r.MaximumPerMinute > MaxPerMinute {
			return core.Invalid("rollout.maximumPerMinute", "rollout.maximumPerMinute must be 1 to %d", MaxPerMinute)
		}
		if e := r.ExponentialRate; e != nil {
			if e.BaseRatePerMinute < 1 || e.BaseRatePerMinute > MaxPerMinute {
				return core.Invalid("rollout.exponentialRate.baseRatePerMinute", "rollout.exponentialRate.baseRatePerMinute must be 1 to %d", MaxPerMinute)
			}
			if !(e.IncrementFactor >= 1.1 && e.IncrementFactor <= 5) {
				return core.Invalid("rollout.exponentialRate.incrementFactor", "rollout.exponentialRate.incrementFactor must be 1.1 to 5")
			}
			c := e.RateIncreaseCriteria
			if (c.NumberOfNotifiedThings > 0) == (c.NumberOfSucceededThings > 0) || c.NumberOfNotifiedThings < 0 || c.NumberOfSucceededThings < 0 {
				return core.Invalid("rollout.exponentialRate.rateIncreaseCriteria", "rollout.exponentialRate.rateIncreaseCriteria needs exactly one of numberOfNotifiedThings and numberOfSucceededThings (at least 1)")
			}
			if r.MaximumPerMinute > 0 && r.MaximumPerMinute < e.BaseRatePerMinute {
				return core.Invalid("rollout.maximumPerMinute", "rollout.maximumPerMinute is below rollout.exponentialRate.baseRatePerMinute")
			}
		} else if r.MaximumPerMinute == 0 {
			return core.Invalid("rollout.maximumPerMinute", "rollout needs maximumPerMinute or exponentialRate")
		}
	}
	if a := sp.Abort; a != nil {
		if len(a.Criteria) == 0 || len(a.Criteria) > MaxAbortCriteria {
			return core.Invalid("abort.criteria", "abort.criteria must have 1 to %d criteria", MaxAbortCriteria)
		}
		for i := range a.Criteria {
			c := &a.Criteria[i]
			f := fmt.Sprintf("abort.criteria[%d]", i)
			if !validFailure(c.FailureType) {
				return core.Invalid(f+".failureType", "%s.failureType must be FAILED, REJECTED, TIMED_OUT or ALL", f)
			}
			switch c.Action {
			case "":
				c.Action = "CANCEL"
			case "CANCEL":
			default:
				return core.Invalid(f+".action", "%s.action must be CANCEL", f)
			}
			if !(c.ThresholdPercentage > 0 && c.ThresholdPercentage <= 100) {
				return core.Invalid(f+".thresholdPercentage", "%s.thresholdPercentage must be above 0 and at most 100", f)
			}
			if c.MinNumberOfExecutedThings < 1 {
				return core.Invalid(f+".minNumberOfExecutedThings", "%s.minNumberOfExecutedThings must be at least 1", f)
			}
		}
	}
	if tm := sp.Timeouts; tm != nil && (tm.InProgressMinutes < 1 || tm.InProgressMinutes > MaxInProgressMinute) {
		return core.Invalid("timeouts.inProgressMinutes", "timeouts.inProgressMinutes must be 1 to %d", MaxInProgressMinute)
	}
	if r := sp.Retry; r != nil {
		if len(r.Criteria) == 0 || len(r.Criteria) > 2 {
			return core.Invalid("retry.criteria", "retry.criteria must have 1 or 2 criteria")
		}
		for i, c := range r.Criteria {
			f := fmt.Sprintf("retry.criteria[%d]", i)
			if c.FailureType != FailureFailed && c.FailureType != FailureTimedOut && c.FailureType != FailureAll {
				return core.Invalid(f+".failureType", "%s.failureType must be FAILED, TIMED_OUT or ALL", f)
			}
			if c.NumberOfRetries < 0 || c.NumberOfRetries > MaxRetries {
				return core.Invalid(f+".numberOfRetries", "%s.numberOfRetries must be 0 to %d", f, MaxRetries)
			}
		}
	}
	return nil
}

func validFailure(f string) bool {
	switch f {
	case FailureFailed, FailureRejected, FailureTimedOut, FailureAll:
		return true
	}
	return false
}

// matches reports whether an execution that ended in status counts as
// failureType.
func matches(failureType, status string) bool {
	switch failureType {
	case FailureAll:
		return status == FailureFailed || status == FailureRejected || status == FailureTimedOut
	default:
		return failureType == status
	}
}
