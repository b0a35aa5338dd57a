// Package store defines Mote's persistent state and the interface every
// storage backend implements: the embedded SQLite store (store/sqlite) by
// default, PostgreSQL in a cluster. Backends are checked by one shared
// conformance suite (store/storetest).
//
// Backends return core errors: core.NotFound for a missing row,
// core.Conflict for a duplicate name. They do not validate business rules
// (the registry does); they only keep data.
package store

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Store is the whole persistent state of a Mote node.
type Store interface {
	Things() ThingStore
	Types() TypeStore
	Groups() GroupStore
	Credentials() CredentialStore
	Policies() PolicyStore
	Tokens() TokenStore
	Shadows() ShadowStore
	Rules() RuleStore
	Commands() CommandStore
	Users() UserStore
	Retained() RetainedStore
	Sessions() SessionStore
	// Close flushes and closes the store.
	Close() error
}

// Thing is one device in the registry.
type Thing struct {
	Name       string            `json:"name"`
	Type       string            `json:"type,omitempty"`
	Attributes map[string]string `json:"attributes"`
	Tags       []string          `json:"tags"`
	Groups     []string          `json:"groups"`   // static groups the thing belongs to
	Policies   []string          `json:"policies"` // policies attached to the thing itself
	Enabled    bool              `json:"enabled"`
	Connected  bool              `json:"connected"`          // maintained by presence
	LastSeen   *time.Time        `json:"lastSeen,omitempty"` // last connect, disconnect or packet from the device
	CreatedAt  time.Time         `json:"createdAt"`
	UpdatedAt  time.Time         `json:"updatedAt"`
	// Stats are kept by the broker (RecordActivity); not configuration.
	Stats ThingStats `json:"-"`
}

// ThingStats count what a thing sent that the platform refused or could
// not use.
type ThingStats struct {
	PublishDenied    int64      // publishes its policies did not allow
	InvalidTelemetry int64      // messages on things/{thing}/telemetry that are not a JSON object
	LastDeniedTopic  string     // the topic of the latest denied publish
	LastDeniedAt     *time.Time // nil: none
	LastInvalidAt    *time.Time // nil: none
}

// Activity is what one thing did since the last batch: its latest packet
// and the counters to add.
type Activity struct {
	Thing            string
	LastSeen         time.Time // zero: no packet
	PublishDenied    int64
	InvalidTelemetry int64
	LastDeniedTopic  string
	LastDeniedAt     time.Time
	LastInvalidAt    time.Time
}

// ThingCounts are the registry's totals.
type ThingCounts struct {
	Total, Connected, Disabled int
}

// ThingPatch is a partial update of a thing; nil fields stay as they are.
// Attributes, Tags, Groups and Policies replace the whole set when non-nil.
type ThingPatch struct {
	Type       *string
	Attributes map[string]string
	Tags       []string
	Groups     []string
	Policies   []string
	Enabled    *bool
}

// ThingFilter selects things in List. Zero fields do not filter.
type ThingFilter struct {
	NamePrefix string
	Type       string
	Group      string
	Tag        string
	Attributes map[string]string // every key must have exactly this value
	Connected  *bool
	// Sort orders the list: "" or "name", "lastSeen", "createdAt";
	// prefixed with "-" for descending. Things never seen sort as the
	// oldest.
	Sort  string
	After string // cursor: the name, or for other sorts ThingCursor of the last thing
	Limit int    // 1..1000; 0 means 100
}

// Presence is one connection-state change of a thing, recorded in batches.
type Presence struct {
	Thing     string
	Connected bool
	At        time.Time
}

// ThingStore keeps things. List returns things ordered by name.
type ThingStore interface {
	Create(ctx context.Context, t Thing) (Thing, error)
	Get(ctx context.Context, name string) (Thing, error)
	List(ctx context.Context, f ThingFilter) ([]Thing, error)
	Update(ctx context.Context, name string, p ThingPatch) (Thing, error)
	Delete(ctx context.Context, name string) error
	// RecordPresence applies presence changes in one transaction; unknown
	// things are ignored. Later entries for the same thing win.
	RecordPresence(ctx context.Context, changes []Presence) error
	// ResetPresence marks every thing disconnected (at start-up of a single node).
	ResetPresence(ctx context.Context) error
	// Count returns the number of things and how many are connected.
	Count(ctx context.Context) (total, connected int, err error)
	// RecordActivity applies a batch of activity in one transaction:
	// LastSeen moves forward only, counters are added. Unknown things are
	// ignored.
	RecordActivity(ctx context.Context, batch []Activity) error
	// Total returns how many things match f (its cursor and limit aside).
	Total(ctx context.Context, f ThingFilter) (int, error)
	// Counts returns how many things there are, connected and disabled.
	Counts(ctx context.Context) (ThingCounts, error)
}

// ThingSorts are the orders of ThingFilter.Sort.
var ThingSorts = []string{"name", "-name", "lastSeen", "-lastSeen", "createdAt", "-createdAt"}

// ThingCursor is the cursor after t in a list sorted by sort.
func ThingCursor(sort string, t Thing) string {
	switch strings.TrimPrefix(sort, "-") {
	case "lastSeen":
		var ms int64
		if t.LastSeen != nil {
			ms = t.LastSeen.UnixMilli()
		}
		return strconv.FormatInt(ms, 10) + ":" + t.Name
	case "createdAt":
		return strconv.FormatInt(t.CreatedAt.UnixMilli(), 10) + ":" + t.Name
	}
	return t.Name
}

// ThingType groups things of one kind; policies attached to a type apply
// to all its things.
type ThingType struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Policies    []string  `json:"policies"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// TypeStore keeps thing types. Deleting a type that things still use is a
// conflict.
type TypeStore interface {
	Create(ctx context.Context, t ThingType) (ThingType, error)
	Get(ctx context.Context, name string) (ThingType, error)
	List(ctx context.Context, after string, limit int) ([]ThingType, error)
	Update(ctx context.Context, t ThingType) (ThingType, error) // Description and Policies
	Delete(ctx context.Context, name string) error
}

// Group is a group of things: static (Query "", members listed on each
// thing) or dynamic (its members are the things that match Query, a fleet
// query; see internal/fleetindex).
type Group struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Query       string    `json:"query,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// GroupStore keeps static groups. Deleting a group removes its memberships.
type GroupStore interface {
	Create(ctx context.Context, g Group) (Group, error)
	Get(ctx context.Context, name string) (Group, error)
	List(ctx context.Context, after string, limit int) ([]Group, error)
	Update(ctx context.Context, g Group) (Group, error) // Description and Query
	Delete(ctx context.Context, name string) error
}

// Credential kinds.
const (
	CredentialSecret = "secret"
	CredentialX509   = "x509"
)

// Credential is one way a thing proves who it is.
type Credential struct {
	ID          string     `json:"id"`
	Thing       string     `json:"thing"`
	Type        string     `json:"type"`                  // CredentialSecret or CredentialX509
	SecretHash  []byte     `json:"-"`                     // keyed hash of the secret
	Fingerprint string     `json:"fingerprint,omitempty"` // X.509: hex SHA-256 of the DER
	CertPEM     string     `json:"certificate,omitempty"` // X.509: the certificate
	NotAfter    *time.Time `json:"notAfter,omitempty"`    // X.509 expiry, or secret expiry if set
	Revoked     bool       `json:"revoked"`
	RevokedAt   *time.Time `json:"revokedAt,omitempty"`
	CreatedAt   time.Time  `json:"createdAt"`
}

// CredentialStore keeps credentials. The thing must exist; deleting a thing
// deletes its credentials.
type CredentialStore interface {
	Create(ctx context.Context, c Credential) (Credential, error)
	Get(ctx context.Context, id string) (Credential, error)
	ListByThing(ctx context.Context, thing string) ([]Credential, error)
	// FindSecret returns the credential whose SecretHash equals hash.
	FindSecret(ctx context.Context, hash []byte) (Credential, error)
	// FindCertificate returns the credential with this fingerprint.
	FindCertificate(ctx context.Context, fingerprint string) (Credential, error)
	Revoke(ctx context.Context, id string, at time.Time) (Credential, error)
	Delete(ctx context.Context, id string) error
}

// Policy is a named, stored policy document (see package policy for its
// meaning). Document is kept as JSON so the store does not depend on the
// policy package.
type Policy struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Document    []byte    `json:"-"` // JSON of policy.Document
	Builtin     bool      `json:"builtin"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// PolicyStore keeps policies. Deleting a policy detaches it from every
// thing and type.
type PolicyStore interface {
	Create(ctx context.Context, p Policy) (Policy, error)
	Get(ctx context.Context, name string) (Policy, error)
	List(ctx context.Context, after string, limit int) ([]Policy, error)
	Update(ctx context.Context, p Policy) (Policy, error) // Description and Document
	Delete(ctx context.Context, name string) error
	// GetMany returns the named policies that exist, in the given order.
	GetMany(ctx context.Context, names []string) ([]Policy, error)
}

// Token is an API token. The secret part is shown once; only a keyed hash
// is kept.
type Token struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Hash       []byte     `json:"-"`
	Role       string     `json:"role"` // admin, operator, viewer
	CreatedAt  time.Time  `json:"createdAt"`
	ExpiresAt  *time.Time `json:"expiresAt,omitempty"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
}

// TokenStore keeps API tokens.
type TokenStore interface {
	Create(ctx context.Context, t Token) (Token, error)
	Get(ctx context.Context, id string) (Token, error)
	List(ctx context.Context) ([]Token, error)
	Delete(ctx context.Context, id string) error
	Touch(ctx context.Context, id string, at time.Time) error
}

// Shadow is the stored form of one device shadow. Name is "" for the
// classic (unnamed) shadow. A deleted shadow is kept as a tombstone
// (Deleted true, Document nil) so that its version counter survives: a
// shadow created again continues from it.
type Shadow struct {
	Thing     string
	Name      string
	Version   int64
	Document  []byte // JSON of the whole shadow document; nil when Deleted
	Deleted   bool
	UpdatedAt time.Time
}

// ShadowInfo describes one live shadow in a List.
type ShadowInfo struct {
	Name      string    // "" for the classic shadow
	Version   int64     //
	UpdatedAt time.Time //
}

// ShadowWrite is one change in a ShadowStore.Write batch: the new state
// of a shadow (Document set) or its deletion (Deleted true, Document nil,
// Version the version it had).
type ShadowWrite struct {
	Thing    string
	Name     string
	Version  int64
	Document []byte
	Deleted  bool
	At       time.Time // zero: now
}

// ShadowStore keeps device shadows. Shadows belong to a thing: deleting
// the thing deletes them, tombstones included. The store does not
// interpret documents; the shadow service does.
type ShadowStore interface {
	// Get returns a shadow. A missing one is a core.KindNotFound error
	// `shadow "x" of thing "t" not found` (`classic shadow of thing "t"
	// not found` for name ""); a deleted one (tombstone) is the same
	// error, returned together with a Shadow that has Deleted set and the
	// version it had.
	Get(ctx context.Context, thing, name string) (Shadow, error)
	// List returns the live (not deleted) shadows of a thing ordered by
	// name, the classic shadow ("") first. An unknown thing has none.
	List(ctx context.Context, thing string) ([]ShadowInfo, error)
	// Write applies a batch of writes in one transaction: all or none.
	// A write for a thing that does not exist is skipped and its index
	// returned in skipped; the rest of the batch is applied.
	Write(ctx context.Context, batch []ShadowWrite) (skipped []int, err error)
}

// Rule is a stored rule of the rules engine. The store keeps SQL,
// Actions and ErrorAction as given; the rules engine parses and checks
// them. Actions is a JSON array of action objects; ErrorAction is one JSON
// action object or nil.
type Rule struct {
	Name        string          `json:"name"`
	SQL         string          `json:"sql"`
	Description string          `json:"description"`
	Enabled     bool            `json:"enabled"`
	Actions     json.RawMessage `json:"actions"`
	ErrorAction json.RawMessage `json:"errorAction,omitempty"`
	CreatedAt   time.Time       `json:"createdAt"`
	UpdatedAt   time.Time       `json:"updatedAt"`
}

// RuleStore keeps rules. List returns rules ordered by name.
type RuleStore interface {
	// Create stores a new rule; a rule of the same name is a conflict.
	Create(ctx context.Context, r Rule) (Rule, error)
	Get(ctx context.Context, name string) (Rule, error)
	List(ctx context.Context, after string, limit int) ([]Rule, error)
	// Update replaces SQL, Description, Enabled, Actions and ErrorAction
	// of the rule r.Name and sets UpdatedAt to now.
	Update(ctx context.Context, r Rule) (Rule, error)
	Delete(ctx context.Context, name string) error
	// Seed creates r unless a rule was ever seeded under r.Name in this
	// store, even if it has been deleted or changed since: a built-in rule
	// an operator deleted stays deleted. created reports whether r was
	// created. An existing rule of that name (created by a user) is kept
	// and marks the name as seeded.
	Seed(ctx context.Context, r Rule) (created bool, err error)
}

// User is a person who signs in to the web console. The password is kept
// only as a slow hash (bcrypt); the store does not interpret it.
type User struct {
	Name         string     `json:"name"`
	PasswordHash []byte     `json:"-"`
	Role         string     `json:"role"` // admin, operator, viewer
	CreatedAt    time.Time  `json:"createdAt"`
	UpdatedAt    time.Time  `json:"updatedAt"`
	LastLoginAt  *time.Time `json:"lastLoginAt,omitempty"`
}

// Session is a signed-in console session. Only a hash of the session id
// (the cookie value) is kept, so a copy of the database opens no session.
type Session struct {
	IDHash    []byte
	User      string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// UserStore keeps console users and their sessions. Deleting a user, or
// changing its password, deletes its sessions. List returns users ordered
// by name.
type UserStore interface {
	Create(ctx context.Context, u User) (User, error)
	Get(ctx context.Context, name string) (User, error)
	List(ctx context.Context) ([]User, error)
	// SetPassword replaces the password hash and deletes the user's
	// sessions.
	SetPassword(ctx context.Context, name string, hash []byte) (User, error)
	// RecordLogin sets LastLoginAt.
	RecordLogin(ctx context.Context, name string, at time.Time) error
	Delete(ctx context.Context, name string) error

	// CreateSession stores a session of an existing user.
	CreateSession(ctx context.Context, s Session) error
	// GetSession returns a session by its id hash (expired or not); a
	// missing one is core.KindNotFound.
	GetSession(ctx context.Context, idHash []byte) (Session, error)
	// ExtendSession moves a session's expiry.
	ExtendSession(ctx context.Context, idHash []byte, expiresAt time.Time) error
	// DeleteSession removes one session; a missing one is not an error.
	DeleteSession(ctx context.Context, idHash []byte) error
	// DeleteExpiredSessions removes sessions that expired before at and
	// returns how many.
	DeleteExpiredSessions(ctx context.Context, at time.Time) (int, error)
}

// Command statuses. A command starts queued; delivered once a device
// acknowledged it; then succeeded, failed or rejected as the device
// reports. A queued command whose TTL passes becomes expired; one
// cancelled before delivery becomes cancelled.
const (
	CommandQueued    = "queued"
	CommandDelivered = "delivered"
	CommandSucceeded = "succeeded"
	CommandFailed    = "failed"
	CommandRejected  = "rejected"
	CommandExpired   = "expired"
	CommandCancelled = "cancelled"
)

// Command is one queued command for a thing. Payload and Result.Output
// are JSON texts the store keeps as given (nil: none).
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

// CommandResult is the outcome a device reported.
type CommandResult struct {
	Status string          `json:"status"` // CommandSucceeded, CommandFailed or CommandRejected
	Output json.RawMessage `json:"output,omitempty"`
}

// CommandFilter selects a thing's commands in CommandStore.List.
type CommandFilter struct {
	Thing  string
	Status string // "" for all
	Before string // cursor: only commands created before the command with this id
	Limit  int    // 1..1000; 0 means 100
}

// CommandStore keeps commands. Commands belong to a thing: creating one
// for a missing thing is core.NotFound `thing "x" not found`, and deleting
// the thing deletes its commands.
type CommandStore interface {
	// Create stores a new command; a duplicate ID is a conflict.
	Create(ctx context.Context, c Command) (Command, error)
	// Get returns a command of a thing, or core.NotFound
	// `command "id" not found` (also when it belongs to another thing).
	Get(ctx context.Context, thing, id string) (Command, error)
	// List returns a thing's commands, newest first.
	List(ctx context.Context, f CommandFilter) ([]Command, error)
	// Pending returns the queued commands of a thing that expire after
	// now, oldest first, at most limit (0 means 100).
	Pending(ctx context.Context, thing string, now time.Time, limit int) ([]Command, error)
	// Transition moves a command to status to if its status is one of
	// from, and returns it. at becomes DeliveredAt for delivered,
	// CompletedAt for any other status (and DeliveredAt too, if unset, for
	// a result); result is stored with a result status. A command in
	// another status is a core.Conflict naming its status, returned
	// together with the command as it is.
	Transition(ctx context.Context, thing, id string, from []string, to string, at time.Time, result *CommandResult) (Command, error)
	// Expire marks queued commands whose ExpiresAt is at or before now as
	// expired (CompletedAt = now) and returns them, at most limit (0 means
	// 100) oldest first.
	Expire(ctx context.Context, now time.Time, limit int) ([]Command, error)
}

// RetainedMessage is an MQTT retained message as the broker keeps it:
// Data is the broker's own encoding of the message, opaque to the store.
type RetainedMessage struct {
	Topic string
	Data  []byte
}

// RetainedStore keeps the broker's retained messages across restarts.
type RetainedStore interface {
	// Apply stores (Data not nil) or deletes (Data nil) retained messages,
	// in one transaction; a later entry for the same topic wins.
	Apply(ctx context.Context, changes []RetainedMessage) error
	// List returns every retained message, ordered by topic.
	List(ctx context.Context) ([]RetainedMessage, error)
}

// SessionClient is a change to one persistent MQTT session. Data is the
// broker's own encoding of the session (opaque to the store).
type SessionClient struct {
	ID   string // the MQTT client id
	Data []byte // nil deletes the session and its messages
	// Reset deletes the session's messages before Data is stored (a new
	// session under a client id that had one).
	Reset bool
}

// SessionMessage is a QoS 1/2 message in flight to a persistent session,
// by packet id. Data is the broker's encoding; nil deletes it.
type SessionMessage struct {
	Client   string
	PacketID uint16
	Data     []byte
}

// SessionChanges is one batch of changes to the persistent sessions.
type SessionChanges struct {
	Clients  []SessionClient
	Messages []SessionMessage
}

// StoredSession is a persistent session with its messages in flight.
type StoredSession struct {
	ID       string
	Data     []byte
	Messages []SessionMessage // by packet id
}

// SessionStore keeps the broker's persistent MQTT sessions across
// restarts: who they are, what they subscribed to, and the QoS 1/2
// messages queued for them and not yet acknowledged.
type SessionStore interface {
	// Apply stores a batch in one transaction: first the clients (a
	// delete or Reset removes the client's messages), then the messages.
	Apply(ctx context.Context, c SessionChanges) error
	// List returns every session, ordered by client id, with its
	// messages; messages of a client without a session are left out.
	List(ctx context.Context) ([]StoredSession, error)
}
