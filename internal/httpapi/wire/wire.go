// Package wire holds the JSON shapes of the REST API's resources: what
// internal/httpapi writes and internal/apiclient reads. They are not the
// store's rows (internal/store), which carry no JSON tags: httpapi maps a
// row to its wire type explicitly, so that a column added to the store
// reaches the API only when someone decides it should, and a secret (a
// token's hash, a password hash) cannot leak by a forgotten `json:"-"`.
//
// The field names, their order and omitempty are the API's contract
// (docs/api.md, openapi.json); httpapi's TestWireFormatUnchanged pins
// them byte for byte. It imports nothing of Mote's but the policy
// document type.
package wire

import (
	"encoding/json"
	"time"

	"github.com/moteiot/mote/internal/policy"
)

// Thing is a thing: its registry record and what the broker counted
// about it.
type Thing struct {
	Name       string            `json:"name"`
	Type       string            `json:"type,omitempty"`
	Attributes map[string]string `json:"attributes"`
	Tags       []string          `json:"tags"`
	Groups     []string          `json:"groups"`   // static groups the thing belongs to
	Policies   []string          `json:"policies"` // policies attached to the thing itself
	Enabled    bool              `json:"enabled"`
	Connected  bool              `json:"connected"`
	LastSeen   *time.Time        `json:"lastSeen,omitempty"`
	CreatedAt  time.Time         `json:"createdAt"`
	UpdatedAt  time.Time         `json:"updatedAt"`
	// Node is the cluster node the thing is connected to (docs/cluster.md).
	Node  string     `json:"node,omitempty"`
	Stats ThingStats `json:"stats"`
}

// ThingStats counts what a thing sent that the platform refused or could
// not use.
type ThingStats struct {
	PublishDenied    int64      `json:"publishDenied"`    // publishes its policies did not allow (MQTT 3.1.1 cannot be told)
	InvalidTelemetry int64      `json:"invalidTelemetry"` // messages on things/{thing}/telemetry that are not a JSON object
	LastDeniedTopic  string     `json:"lastDeniedTopic,omitempty"`
	LastDeniedAt     *time.Time `json:"lastDeniedAt,omitempty"`
	LastInvalidAt    *time.Time `json:"lastInvalidAt,omitempty"`
	// Telemetry and reported values outside the type's device model
	// (flagged, not refused); the latest as {"kind","key","value","reason"}.
	ModelViolations      int64           `json:"modelViolations"`
	LastModelViolation   json.RawMessage `json:"lastModelViolation,omitempty"`
	LastModelViolationAt *time.Time      `json:"lastModelViolationAt,omitempty"`
}

// ThingType is a thing type.
type ThingType struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Policies    []string        `json:"policies"`
	Model       json.RawMessage `json:"model,omitempty"`
	CreatedAt   time.Time       `json:"createdAt"`
	UpdatedAt   time.Time       `json:"updatedAt"`
}

// Group is a group of things, static or dynamic (Query).
type Group struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Dynamic     bool      `json:"dynamic"`
	Query       string    `json:"query,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// Policy is a policy with its document.
type Policy struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Builtin     bool            `json:"builtin"`
	CreatedAt   time.Time       `json:"createdAt"`
	UpdatedAt   time.Time       `json:"updatedAt"`
	Document    policy.Document `json:"document"`
}

// Token is an API token (never its secret or hash).
type Token struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	User       string     `json:"user,omitempty"`
	Groups     []string   `json:"groups,omitempty"`
	RateLimit  int        `json:"rateLimit,omitempty"`
	CreatedAt  time.Time  `json:"createdAt"`
	ExpiresAt  *time.Time `json:"expiresAt,omitempty"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
}

// NewToken is a created token with its secret, shown once.
type NewToken struct {
	Token
	Secret string `json:"token"`
}

// User is a console user (never the password hash).
type User struct {
	Name        string     `json:"name"`
	Role        string     `json:"role"`
	Groups      []string   `json:"groups,omitempty"`
	CreatedAt   time.Time  `json:"createdAt"`
	UpdatedAt   time.Time  `json:"updatedAt"`
	LastLoginAt *time.Time `json:"lastLoginAt,omitempty"`
}

// Rule is a rule: its secrets redacted unless the caller is an admin, and
// its counters since the server started.
type Rule struct {
	Name        string          `json:"name"`
	SQL         string          `json:"sql"`
	Description string          `json:"description"`
	Enabled     bool            `json:"enabled"`
	Actions     json.RawMessage `json:"actions"`
	ErrorAction json.RawMessage `json:"errorAction,omitempty"`
	CreatedAt   time.Time       `json:"createdAt"`
	UpdatedAt   time.Time       `json:"updatedAt"`
	Metrics     RuleMetrics     `json:"metrics"`
}

// RuleMetrics are a rule's counters since the server started.
type RuleMetrics struct {
	Matched        int64       `json:"matched"`
	Errors         int64       `json:"errors"`
	ActionsFailed  int64       `json:"actionsFailed"`
	ActionsDropped int64       `json:"actionsDropped"`
	Dropped        RuleDropped `json:"dropped"`
	BreakerOpen    bool        `json:"breakerOpen"`
}

// RuleDropped counts a rule's actions dropped, by reason.
type RuleDropped struct {
	QueueFull        int64 `json:"queueFull"`
	BreakerOpen      int64 `json:"breakerOpen"`
	RetriesExhausted int64 `json:"retriesExhausted"`
}

// Command is a command sent to a thing, with its result once it has one.
type Command struct {
	ID          string          `json:"id"`
	Thing       string          `json:"thing"`
	Name        string          `json:"name"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	Status      string          `json:"status"`
	CreatedAt   time.Time       `json:"createdAt"`
	ExpiresAt   time.Time       `json:"expiresAt"`
	DeliveredAt *time.Time      `json:"deliveredAt,omitempty"`
	CompletedAt *time.Time      `json:"completedAt,omitempty"`
	Result      *CommandResult  `json:"result,omitempty"`
}

// CommandResult is what the device reported for a command.
type CommandResult struct {
	Status string          `json:"status"` // succeeded, failed or rejected
	Output json.RawMessage `json:"output,omitempty"`
}

// Command statuses (as the store and the commands package use them).
const (
	CommandQueued    = "queued"
	CommandDelivered = "delivered"
	CommandSucceeded = "succeeded"
	CommandFailed    = "failed"
	CommandRejected  = "rejected"
	CommandExpired   = "expired"
	CommandCancelled = "cancelled"
)
