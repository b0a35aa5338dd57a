package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// ---- jobs ----

// Job is a job as the API answers it (docs/jobs.md). Its configuration
// (targets, rollout, abort, timeouts, retry) is kept as the JSON the
// server sent.
type Job struct {
	JobID           string          `json:"jobId"`
	Description     string          `json:"description,omitempty"`
	Status          string          `json:"status"`
	TargetSelection string          `json:"targetSelection"`
	Targets         json.RawMessage `json:"targets,omitempty"`
	Document        json.RawMessage `json:"document,omitempty"`
	DocumentSource  string          `json:"documentSource,omitempty"`
	Rollout         json.RawMessage `json:"rollout,omitempty"`
	Abort           json.RawMessage `json:"abort,omitempty"`
	Timeouts        json.RawMessage `json:"timeouts,omitempty"`
	Retry           json.RawMessage `json:"retry,omitempty"`
	ReasonCode      string          `json:"reasonCode,omitempty"`
	Comment         string          `json:"comment,omitempty"`
	Released        int64           `json:"released"`
	CreatedAt       time.Time       `json:"createdAt"`
	UpdatedAt       time.Time       `json:"updatedAt"`
	CompletedAt     *time.Time      `json:"completedAt,omitempty"`
	Counts          map[string]int  `json:"counts,omitempty"`
}

// JobExecution is a job's execution on one thing.
type JobExecution struct {
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

// JobCancel is the body of CancelJob.
type JobCancel struct {
	Force      bool   `json:"force,omitempty"`
	ReasonCode string `json:"reasonCode,omitempty"`
	Comment    string `json:"comment,omitempty"`
}

// CreateJob creates a job from its request body (the JSON of POST
// /api/v1/jobs).
func (c *Client) CreateJob(ctx context.Context, spec json.RawMessage) (Job, error) {
	var out Job
	err := c.do(ctx, request{method: http.MethodPost, path: "/jobs", body: spec}, &out)
	return out, err
}

// GetJob returns a job with its counts per execution status.
func (c *Client) GetJob(ctx context.Context, id string) (Job, error) {
	var out Job
	err := c.do(ctx, request{method: http.MethodGet, path: "/jobs/" + seg(id)}, &out)
	return out, err
}

// ListJobs returns one page of jobs by id.
func (c *Client) ListJobs(ctx context.Context, o ListOptions) ([]Job, string, error) {
	return list[Job](ctx, c, "/jobs", o.values())
}

// CancelJob cancels a job in progress.
func (c *Client) CancelJob(ctx context.Context, id string, in JobCancel) (Job, error) {
	var out Job
	err := c.do(ctx, request{method: http.MethodPost, path: "/jobs/" + seg(id) + "/cancel", body: in}, &out)
	return out, err
}

// DeleteJob deletes a job (force: also one in progress).
func (c *Client) DeleteJob(ctx context.Context, id string, force bool) error {
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	return c.do(ctx, request{method: http.MethodDelete, path: "/jobs/" + seg(id), query: q}, nil)
}

// ListJobExecutions returns one page of a job's executions by thing.
func (c *Client) ListJobExecutions(ctx context.Context, id string, o ListOptions) ([]JobExecution, string, error) {
	return list[JobExecution](ctx, c, "/jobs/"+seg(id)+"/executions", o.values())
}

// ListThingJobs returns a thing's job executions, oldest first.
func (c *Client) ListThingJobs(ctx context.Context, thing string) ([]JobExecution, error) {
	l, _, err := list[JobExecution](ctx, c, "/things/"+seg(thing)+"/jobs", url.Values{"limit": {"1000"}})
	return l, err
}
