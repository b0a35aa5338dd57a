package apiclient

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"time"
)

// ---- audit log ----

// AuditEntry is an audit log entry as the API shows it (docs/audit.md).
type AuditEntry struct {
	ID    string    `json:"id"`
	Time  time.Time `json:"time"`
	Actor struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
		ID   string `json:"id,omitempty"`
	} `json:"actor"`
	Action string `json:"action"`
	Target struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	} `json:"target"`
	Status           int             `json:"status"`
	Source           string          `json:"source"`
	RequestID        string          `json:"requestId"`
	Before           json.RawMessage `json:"before,omitempty"`
	After            json.RawMessage `json:"after,omitempty"`
	DocumentsOmitted bool            `json:"documentsOmitted,omitempty"`
}

// AuditFilter selects audit entries; zero fields do not filter. Action
// may end in * (thing.*); Target is kind:name or a bare name.
type AuditFilter struct {
	Actor, Action, Target string
	Since, Until          time.Time
}

func (f AuditFilter) values(q url.Values) url.Values {
	for k, v := range map[string]string{"actor": f.Actor, "action": f.Action, "target": f.Target} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.UTC().Format(time.RFC3339))
	}
	return q
}

// ListAudit returns one page of the audit log, newest first (admin).
func (c *Client) ListAudit(ctx context.Context, f AuditFilter, o ListOptions) ([]AuditEntry, string, error) {
	return list[AuditEntry](ctx, c, "/audit", f.values(o.values()))
}

// ExportAudit streams every matching entry as JSON lines into w and
// returns the bytes written.
func (c *Client) ExportAudit(ctx context.Context, f AuditFilter, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, request{method: http.MethodGet, path: "/audit/export", query: f.values(url.Values{}), accept: "application/x-ndjson"})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.Copy(w, resp.Body)
}
