// Package store defines Mote's persistent state and the interface every
// storage backend implements: the embedded SQLite store (store/sqlite) by
// default, PostgreSQL in a cluster. Backends are checked by one shared
// conformance suite (store/storetest).
//
// Backends return core errors: core.NotFound for a missing row,
// core.Conflict for a duplicate name. They do not validate business rules
// (the registry does); they only keep data.
//
// Rows are not a wire format: the REST API has its own types
// (internal/httpapi/wire) and maps rows to them, so the registry's rows
// carry no JSON tags. Commands keep theirs, because the commands package
// publishes them to devices and applications over MQTT as they are.
package store

import (
	"context"
	"encoding/json"
	"errors"
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
	Artifacts() ArtifactStore
	Files() FileStore
	Alarms() AlarmStore
	Analytics() AnalyticsStore
	Jobs() JobStore
	Profiles() ProfileStore
	Dashboards() DashboardStore
	StatsHistory() StatsHistoryStore
	// Provisioning keeps enrollment groups and claim tokens (provisioning.go).
	Provisioning() ProvisioningStore
	Audit() AuditStore
	// RuleWindows keeps the open windows of windowed rules (ruleengine).
	RuleWindows() RuleWindowStore
	// Close flushes and closes the store.
	Close() error
}

// Thing is one device in the registry.
type Thing struct {
	Name       string
	Type       string
	Attributes map[string]string
	Tags       []string
	Groups     []string // static groups the thing belongs to
	Policies   []string // policies attached to the thing itself
	Enabled    bool
	Connected  bool       // maintained by presence
	LastSeen   *time.Time // last connect, disconnect or packet from the device
	CreatedAt  time.Time
	UpdatedAt  time.Time
	// Stats are kept by the broker (RecordActivity); not configuration.
	Stats ThingStats
	// Node is the cluster node the thing connected to last while it is
	// connected ("" for a single node; docs/cluster.md).
	Node string
}

// ThingStats count what a thing sent that the platform refused or could
// not use.
type ThingStats struct {
	PublishDenied    int64      // publishes its policies did not allow
	InvalidTelemetry int64      // messages on things/{thing}/telemetry that are not a JSON object
	LastDeniedTopic  string     // the topic of the latest denied publish
	LastDeniedAt     *time.Time // nil: none
	LastInvalidAt    *time.Time // nil: none
	// ModelViolations counts reported values and telemetry outside the
	// thing type's model (flagged, not refused; see internal/devicemodel).
	ModelViolations      int64
	LastModelViolation   string     // JSON {"kind","key","value"} of the latest; "" none
	LastModelViolationAt *time.Time // nil: none
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
	// Model violations (internal/devicemodel), recorded by their own
	// batches: counted, the latest replaces the one before.
	ModelViolations      int64
	LastModelViolation   string
	LastModelViolationAt time.Time
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
	// Node is the cluster node that recorded the change ("" alone). A
	// connect sets the thing's node; a disconnect applies only when the
	// thing's node is this one (a device that moved to another node
	// stays connected there), and LastSeen moves either way.
	Node string
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
	// ConnectedNodes returns the cluster nodes that things are connected
	// on, by name (none for a single node).
	ConnectedNodes(ctx context.Context) ([]string, error)
	// ResetNodePresence marks disconnected the things connected on node
	// (its Node cleared, LastSeen kept) and returns them by name. Called
	// by several nodes together, each thing is returned to one of them.
	ResetNodePresence(ctx context.Context, node string) ([]string, error)
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
	// CreateMany stores new things and credentials for them in one
	// transaction: all or none (bulk import). It fails as Create would
	// on the first thing that cannot be stored (its name taken, its type,
	// a group or a policy missing), naming it, and stores nothing.
	CreateMany(ctx context.Context, things []Thing, creds []Credential) error
	// GetMany returns those of the named things that exist, as Get would,
	// in no particular order; unknown names are left out. It reads them a
	// few hundred per statement (bulk import's existence check).
	GetMany(ctx context.Context, names []string) ([]Thing, error)
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
	Name        string
	Description string
	Policies    []string
	// Model is the type's device model as JSON (internal/devicemodel);
	// nil: none. The store keeps it as given.
	Model     json.RawMessage
	CreatedAt time.Time
	UpdatedAt time.Time
}

// TypeStore keeps thing types. Deleting a type that things still use is a
// conflict.
type TypeStore interface {
	Create(ctx context.Context, t ThingType) (ThingType, error)
	Get(ctx context.Context, name string) (ThingType, error)
	List(ctx context.Context, after string, limit int) ([]ThingType, error)
	Update(ctx context.Context, t ThingType) (ThingType, error) // Description, Policies and Model
	Delete(ctx context.Context, name string) error
}

// Group is a group of things: static (Query "", members listed on each
// thing) or dynamic (its members are the things that match Query, a fleet
// query; see internal/fleetindex).
type Group struct {
	Name        string
	Description string
	Query       string
	CreatedAt   time.Time
	UpdatedAt   time.Time
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
	// CredentialSymmetricKey holds a device's symmetric key for Azure IoT
	// Hub SAS tokens (package azureiot), sealed at rest.
	CredentialSymmetricKey = "symmetricKey"
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
	// SealedKey is a symmetricKey credential's key, sealed by the caller
	// (internal/seal); the store keeps it as an opaque string.
	SealedKey string `json:"-"`
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
	// Expire brings the credential's NotAfter forward to at (a rotation
	// window's end); a NotAfter already earlier stays. A missing
	// credential → core.NotFound.
	Expire(ctx context.Context, id string, at time.Time) (Credential, error)
	// ListRevokedCertificates returns every revoked X.509 credential
	// (for the CRL), ordered by RevokedAt, then ID.
	ListRevokedCertificates(ctx context.Context) ([]Credential, error)
}

// Policy is a named, stored policy document (see package policy for its
// meaning). Document is kept as JSON so the store does not depend on the
// policy package.
type Policy struct {
	Name        string
	Description string
	Document    []byte // JSON of policy.Document
	Builtin     bool
	CreatedAt   time.Time
	UpdatedAt   time.Time
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
	ID         string
	Name       string
	Hash       []byte
	Role       string // admin, operator, viewer
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	LastUsedAt *time.Time
	// User owns the token ("" for a token of no user, such as one made
	// by `mote token create` on the server); deleting the user deletes
	// its tokens. Groups scopes it (nil: the user's scope); RateLimit
	// is its request limit per minute (0: none).
	User      string
	Groups    []string
	RateLimit int
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

	// Checked makes the write a compare-and-set (WriteChecked): it
	// applies only if the stored shadow has version IfVersion and is
	// deleted (a tombstone, or no row with IfVersion 0) exactly when
	// IfDeleted. Nodes of a cluster that write one shadow serialize
	// through it: versions never fork (docs/shadows.md).
	Checked   bool
	IfVersion int64
	IfDeleted bool
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
	// WriteChecked is Write with compare-and-set: a Checked write whose
	// condition does not hold is not applied and its index is returned
	// in conflicts, and so is every later write of the same shadow in
	// the batch (it was computed from the one that failed). Unchecked
	// writes never conflict. The rest of the batch is applied.
	WriteChecked(ctx context.Context, batch []ShadowWrite) (skipped, conflicts []int, err error)
}

// Rule is a stored rule of the rules engine. The store keeps SQL,
// Actions and ErrorAction as given; the rules engine parses and checks
// them. Actions is a JSON array of action objects; ErrorAction is one JSON
// action object or nil.
type Rule struct {
	Name        string
	SQL         string
	Description string
	Enabled     bool
	Actions     json.RawMessage
	ErrorAction json.RawMessage
	CreatedAt   time.Time
	UpdatedAt   time.Time
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

// RuleWindowState is the saved open windows of one windowed rule: opaque
// to the store (package rules encodes it), with the statement it belongs
// to, so that a rule whose SQL changed starts afresh.
type RuleWindowState struct {
	Rule    string
	SQL     string
	State   []byte
	SavedAt time.Time
}

// RuleWindowStore keeps the open windows of windowed rules across
// restarts.
type RuleWindowStore interface {
	// Put saves (replaces) the state of w.Rule. The state of a rule that
	// does not exist (deleted meanwhile) is not saved, and that is not an
	// error. Deleting a rule deletes its state.
	Put(ctx context.Context, w RuleWindowState) error
	// List returns every saved state ordered by rule.
	List(ctx context.Context) ([]RuleWindowState, error)
	// Delete removes the state of rule; none is not an error.
	Delete(ctx context.Context, rule string) error
}

// User is a person who signs in to the web console. The password is kept
// only as a slow hash (bcrypt); the store does not interpret it.
type User struct {
	Name         string
	PasswordHash []byte
	Role         string // admin, operator, viewer
	CreatedAt    time.Time
	UpdatedAt    time.Time
	LastLoginAt  *time.Time
	// Groups scopes the user to the things of these groups (static or
	// dynamic); nil: every thing.
	Groups []string
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
	// Delete removes the user with its sessions and its tokens
	// (Token.User). Deleting the last admin → core.KindConflict.
	Delete(ctx context.Context, name string) error
	// Update replaces Role and Groups and sets UpdatedAt. Demoting the
	// last admin → core.KindConflict; a missing user → core.NotFound.
	Update(ctx context.Context, u User) (User, error)

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
	// Get returns one client id's session with its messages; ok is false
	// when there is none (a cluster node taking a session over).
	Get(ctx context.Context, clientID string) (s StoredSession, ok bool, err error)
}

// Artifact is a stored firmware artifact (internal/artifacts): the
// metadata of one version of a named binary whose bytes are in the blob
// store under BlobKey.
type Artifact struct {
	Name        string
	Version     string
	ContentType string
	Size        int64
	SHA256      string // lowercase hex
	// Signature is the base64 ed25519 signature of the content that was
	// verified at upload, SigningKey the id of the key that verified it;
	// both "" for an unsigned artifact.
	Signature  string
	SigningKey string
	BlobKey    string
	CreatedAt  time.Time
}

// ArtifactFilter selects artifacts in ArtifactStore.List.
type ArtifactFilter struct {
	Name  string // "": all names
	After string // cursor: ArtifactCursor of the last artifact of the previous page
	Limit int    // 1..1000; 0 means 100
}

// ArtifactCursor is the List cursor of an artifact: name, NUL, version.
func ArtifactCursor(a Artifact) string { return a.Name + "\x00" + a.Version }

// FirmwareCount is how many things report one firmware version.
type FirmwareCount struct {
	Version string // "": the thing reports none
	Things  int
}

// ArtifactStore keeps artifact metadata. List orders by name, then
// version (byte-wise).
type ArtifactStore interface {
	// Create stores a new artifact; an existing name and version is
	// core.Conflict `artifact "name" version "v" already exists`.
	Create(ctx context.Context, a Artifact) (Artifact, error)
	// Get returns one version, or core.NotFound `artifact "name@v" not found`.
	Get(ctx context.Context, name, version string) (Artifact, error)
	// Latest returns the most recently created version of name, or
	// core.NotFound `artifact "name" not found`.
	Latest(ctx context.Context, name string) (Artifact, error)
	List(ctx context.Context, f ArtifactFilter) ([]Artifact, error)
	// Delete removes one version; a missing one is core.NotFound.
	Delete(ctx context.Context, name, version string) error
	// FirmwareCounts counts things by the value of key in the reported
	// state of their classic shadow (a string or a number; anything
	// else, or none, counts as ""), most things first, then by version.
	FirmwareCounts(ctx context.Context, key string) ([]FirmwareCount, error)
}

// File is a file a device uploaded (internal/files), or is uploading.
// The complete content (Complete true) is the blob BlobKey of Size bytes
// with digest SHA256. An upload in progress (UploadID != "") has received
// Received bytes in Parts blobs, of Total (-1: not known yet); when it
// completes it replaces the complete content.
type File struct {
	Thing       string
	Name        string
	ContentType string
	Complete    bool
	Size        int64
	SHA256      string
	BlobKey     string
	UploadID    string
	Received    int64
	Total       int64
	Parts       int
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// FileStore keeps the files of things. Files belong to a thing: storing
// one for a missing thing is core.NotFound `thing "x" not found`, and
// deleting the thing deletes its rows (its blobs are the files service's
// to delete).
type FileStore interface {
	// Put creates or replaces a file row (CreatedAt is kept on replace).
	Put(ctx context.Context, f File) (File, error)
	// Get returns a file of a thing, or core.NotFound `file "name" not found`.
	Get(ctx context.Context, thing, name string) (File, error)
	// List returns a thing's files ordered by name.
	List(ctx context.Context, thing string) ([]File, error)
	// Delete removes a file row; a missing one is core.NotFound.
	Delete(ctx context.Context, thing, name string) error
	// Usage is the bytes a thing's files hold: Size plus Received of
	// every row.
	Usage(ctx context.Context, thing string) (int64, error)
}

// Alarm statuses. An alarm is raised active; an operator acknowledges it;
// it is cleared by its source or an operator, acknowledged or not. An
// active or acknowledged alarm is open: there is at most one open alarm
// per (thing, type).
const (
	AlarmActive       = "active"
	AlarmAcknowledged = "acknowledged"
	AlarmCleared      = "cleared"
)

// Alarm severities, most severe first.
const (
	SeverityCritical = "critical"
	SeverityMajor    = "major"
	SeverityMinor    = "minor"
	SeverityWarning  = "warning"
)

// Alarm is one alarm of a thing. Details is a JSON object kept as given
// (nil: none). Count is how many times it was raised while open; LastAt
// the time of the latest.
type Alarm struct {
	ID        string
	Type      string
	Thing     string
	Severity  string
	Status    string
	Details   json.RawMessage
	Count     int64
	CreatedAt time.Time
	LastAt    time.Time
	AckedAt   *time.Time
	ClearedAt *time.Time
}

// AlarmFilter selects alarms in AlarmStore.List. Zero fields do not filter.
type AlarmFilter struct {
	Status   string // active, acknowledged, cleared; "open" for active or acknowledged
	Thing    string
	Severity string
	Type     string
	Before   string // cursor: only alarms created before the alarm with this id
	Limit    int    // 1..1000; 0 means 100
}

// AlarmStore keeps alarms and their history. Alarms belong to a thing:
// raising one for a missing thing is core.NotFound `thing "x" not found`,
// and deleting the thing deletes its alarms.
type AlarmStore interface {
	// Raise records that alarm a.Type of a.Thing happened at a.LastAt
	// (zero: now). If the thing has an open alarm of that type, its Count
	// grows by one, LastAt moves forward, Severity and Details are
	// replaced, and created is false. Otherwise a new active alarm with
	// id a.ID, Count 1 and CreatedAt = LastAt is stored: if maxOpen > 0
	// and maxOpen alarms are open already, that is a core.KindQuota error.
	Raise(ctx context.Context, a Alarm, maxOpen int) (out Alarm, created bool, err error)
	// Get returns an alarm, or core.NotFound `alarm "id" not found`.
	Get(ctx context.Context, id string) (Alarm, error)
	// Open returns the open alarm of type typ of thing, or core.NotFound.
	Open(ctx context.Context, thing, typ string) (Alarm, error)
	// List returns alarms newest first.
	List(ctx context.Context, f AlarmFilter) ([]Alarm, error)
	// Ack moves an active alarm to acknowledged (AckedAt = at). An alarm in
	// another status is a core.Conflict naming its status, returned
	// together with the alarm as it is.
	Ack(ctx context.Context, id string, at time.Time) (Alarm, error)
	// Clear moves an open alarm to cleared (ClearedAt = at); a cleared one
	// is a core.Conflict, returned together with the alarm.
	Clear(ctx context.Context, id string, at time.Time) (Alarm, error)
	// CountOpen returns how many alarms are open.
	CountOpen(ctx context.Context) (int, error)
	// Apply applies ops in order in one transaction (one durable commit
	// for the lot: the alarm service's group commit) and returns one
	// result per op. Each op means what Raise (Raise set, with maxOpen)
	// or a clear of the open alarm of (Thing, Type) at At means; an op's
	// own failure (core.NotFound, core.KindQuota, ...) is its result's
	// Err and does not undo the others. The error is for the batch as a
	// whole (the transaction failed): then nothing was applied.
	Apply(ctx context.Context, ops []AlarmOp, maxOpen int) ([]AlarmResult, error)
}

// AlarmOp is one change in AlarmStore.Apply: a raise (Raise non-nil) or
// the clear of the open alarm of type Type of Thing at At (zero: now).
type AlarmOp struct {
	Raise       *Alarm
	Thing, Type string
	At          time.Time
}

// AlarmResult is what one AlarmOp did: the alarm as it is after it,
// whether a raise created it, or the op's error (a clear with nothing
// open is core.NotFound).
type AlarmResult struct {
	Alarm   Alarm
	Created bool
	Err     error
}

// AnalyticsRule configures one detector of the analytics (package
// analytics interprets Kind and Config) for the things of a type or of a
// group (at most one of the two; neither: every thing).
type AnalyticsRule struct {
	Name      string
	Kind      string
	ThingType string
	Group     string
	Config    json.RawMessage
	Enabled   bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// DetectorState is the saved state of one detector of a rule for one
// thing, opaque to the store. A nil State deletes it in PutStates.
type DetectorState struct {
	Rule      string
	Thing     string
	State     []byte
	UpdatedAt time.Time
}

// AnalyticsStore keeps analytics rules and their detectors' state.
// Deleting a rule or a thing deletes its states. Lists are ordered by
// name (states by rule, then thing).
type AnalyticsStore interface {
	CreateRule(ctx context.Context, r AnalyticsRule) (AnalyticsRule, error)
	GetRule(ctx context.Context, name string) (AnalyticsRule, error)
	ListRules(ctx context.Context, after string, limit int) ([]AnalyticsRule, error)
	// UpdateRule replaces Kind, ThingType, Group, Config and Enabled of
	// the rule r.Name and sets UpdatedAt to now.
	UpdateRule(ctx context.Context, r AnalyticsRule) (AnalyticsRule, error)
	// DeleteRule deletes a rule and its states.
	DeleteRule(ctx context.Context, name string) error
	// PutStates stores (State not nil) or deletes states in one
	// transaction; states of a missing rule or thing are skipped.
	PutStates(ctx context.Context, batch []DetectorState) error
	// States returns every saved state.
	States(ctx context.Context) ([]DetectorState, error)
}

// Job statuses.
const (
	JobInProgress = "IN_PROGRESS"
	JobCanceled   = "CANCELED"
	JobCompleted  = "COMPLETED"
)

// Job execution statuses. JobExecScheduled is Mote's own: an execution
// the rollout has not released yet, which its device does not see.
const (
	JobExecScheduled  = "SCHEDULED"
	JobExecQueued     = "QUEUED"
	JobExecInProgress = "IN_PROGRESS"
	JobExecSucceeded  = "SUCCEEDED"
	JobExecFailed     = "FAILED"
	JobExecTimedOut   = "TIMED_OUT"
	JobExecRejected   = "REJECTED"
	JobExecRemoved    = "REMOVED"
	JobExecCanceled   = "CANCELED"
)

// Job is one job (internal/jobs). Spec is its configuration (targets,
// document, rollout, abort, timeouts, retry) as internal/jobs encodes it;
// the store keeps it as given.
type Job struct {
	ID          string
	Description string
	Status      string // JobInProgress, JobCanceled or JobCompleted
	Continuous  bool   // targetSelection continuous
	Spec        []byte
	ReasonCode  string // why it was canceled (an abort, an operator)
	Comment     string
	// The rollout's progress: executions released so far and the time up
	// to which the release rate has been used. Kept with every Release.
	Released    int64
	ReleasedAt  time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time
	CompletedAt *time.Time
}

// JobExecution is a job's execution on one thing.
type JobExecution struct {
	JobID           string
	Thing           string
	Status          string
	StatusDetails   map[string]string // nil: none
	QueuedAt        *time.Time        // when the rollout released it
	StartedAt       *time.Time
	LastUpdatedAt   time.Time
	TimeoutAt       *time.Time // an IN_PROGRESS execution times out then
	VersionNumber   int64
	ExecutionNumber int64
	Retries         int
}

// JobExecutionFilter selects executions in JobStore.Executions: those of
// a job (ordered by thing, After a thing name) or those of a thing
// (ordered by QueuedAt, oldest first; After unused).
type JobExecutionFilter struct {
	JobID    string
	Thing    string
	Statuses []string // none: all
	After    string
	Limit    int // 1..1000; 0 means 100
}

// JobStore keeps jobs and their executions. An execution belongs to its
// job and its thing: deleting either deletes it.
type JobStore interface {
	// Create stores a job and one JobExecScheduled execution (version 1,
	// execution number 1) per thing, in one transaction, skipping names
	// that are not things. It returns the job and how many executions it
	// created. A duplicate id is a core.Conflict.
	Create(ctx context.Context, j Job, things []string) (Job, int, error)
	// Get returns a job or core.NotFound `job "id" not found`.
	Get(ctx context.Context, id string) (Job, error)
	// List returns jobs ordered by id, after the id after.
	List(ctx context.Context, after string, limit int) ([]Job, error)
	// Update stores a job's Status, ReasonCode, Comment and CompletedAt
	// (UpdatedAt becomes now).
	Update(ctx context.Context, j Job) (Job, error)
	// Delete deletes a job and its executions.
	Delete(ctx context.Context, id string) error
	// AddExecutions adds JobExecScheduled executions for the things that
	// have none in the job (missing things are skipped) and returns the
	// things added.
	AddExecutions(ctx context.Context, id string, things []string) ([]string, error)
	// Release moves up to n of the job's JobExecScheduled executions, in
	// creation order, to JobExecQueued (QueuedAt = at, version + 1),
	// adds their number to the job's Released and sets its ReleasedAt to
	// clock, in one transaction; it returns the released executions.
	Release(ctx context.Context, id string, n int, at, clock time.Time) ([]JobExecution, error)
	// Execution returns a job's execution on a thing, or core.NotFound
	// `job execution "id/thing" not found`.
	Execution(ctx context.Context, id, thing string) (JobExecution, error)
	// Executions lists executions (see JobExecutionFilter).
	Executions(ctx context.Context, f JobExecutionFilter) ([]JobExecution, error)
	// UpdateExecution stores e's Status, StatusDetails, QueuedAt,
	// StartedAt, TimeoutAt, ExecutionNumber and Retries if the stored
	// version is version; the version becomes version+1 and
	// LastUpdatedAt e.LastUpdatedAt (now if zero). Another stored version
	// is a core.Conflict, returned with the stored execution.
	UpdateExecution(ctx context.Context, e JobExecution, version int64) (JobExecution, error)
	// TransitionAll moves the job's executions in one of the statuses
	// from to status to (version + 1, LastUpdatedAt = at) and returns
	// their things.
	TransitionAll(ctx context.Context, id string, from []string, to string, at time.Time) ([]string, error)
	// Counts returns how many executions of the job are in each status.
	Counts(ctx context.Context, id string) (map[string]int, error)
	// TimedOut returns JobExecInProgress executions whose TimeoutAt is at
	// or before now, at most limit (0 means 100).
	TimedOut(ctx context.Context, now time.Time, limit int) ([]JobExecution, error)
}

// Profile is a configuration profile (internal/profiles): a fragment of
// desired state merged into the classic shadow of every thing its target
// selects. The store keeps Desired as given; internal/profiles checks it.
type Profile struct {
	Name        string
	Description string
	Desired     []byte // a JSON object
	Group       string // target: a (static or dynamic) group, or
	Query       string // a fleet query (exactly one of Group, Query)
	Priority    int
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// ProfileApplied is what the profiles wrote into one thing's desired
// shadow, so that keys they no longer set can be removed and keys they
// never set are never touched. State is internal/profiles' encoding.
type ProfileApplied struct {
	Thing     string
	Profiles  []string // the profiles that apply to the thing, by name
	State     []byte
	UpdatedAt time.Time
}

// ProfileStore keeps profiles and, per thing, what they applied. An
// applied row belongs to its thing: deleting the thing deletes it.
type ProfileStore interface {
	// Create stores a new profile; the same name is core.Conflict
	// `profile "x" already exists`.
	Create(ctx context.Context, p Profile) (Profile, error)
	// Get returns a profile or core.NotFound `profile "x" not found`.
	Get(ctx context.Context, name string) (Profile, error)
	// List returns profiles ordered by name, after the name after.
	List(ctx context.Context, after string, limit int) ([]Profile, error)
	// Update replaces Description, Desired, Group, Query and Priority
	// (UpdatedAt becomes now); a missing profile is core.NotFound.
	Update(ctx context.Context, p Profile) (Profile, error)
	// Delete removes a profile; a missing one is core.NotFound.
	Delete(ctx context.Context, name string) error
	// Count returns how many profiles there are.
	Count(ctx context.Context) (int, error)
	// PutApplied creates or replaces a thing's applied row (UpdatedAt
	// becomes now); a missing thing is core.NotFound `thing "x" not found`.
	PutApplied(ctx context.Context, a ProfileApplied) error
	// GetApplied returns a thing's applied row or core.NotFound
	// `profile state "thing" not found`.
	GetApplied(ctx context.Context, thing string) (ProfileApplied, error)
	// ListApplied returns applied rows ordered by thing, after the thing
	// after.
	ListApplied(ctx context.Context, after string, limit int) ([]ProfileApplied, error)
	// DeleteApplied removes a thing's applied row; none is not an error.
	DeleteApplied(ctx context.Context, thing string) error
}

// Dashboard is a stored console dashboard. Widgets is the JSON array of
// its widgets, kept as given (package dashboards validates it). Version
// is 1 on creation and grows by one with every update.
type Dashboard struct {
	Name      string
	Title     string
	Widgets   json.RawMessage
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ErrStaleVersion is the cause (errors.Is) of the core.Conflict that a
// dashboard update or delete with a version other than the stored one
// returns.
var ErrStaleVersion = errors.New("the dashboard has changed since that version")

// DashboardStore keeps dashboards. List returns them ordered by name.
type DashboardStore interface {
	// Create stores d with Version 1. A duplicate name is a conflict, and
	// so is a new dashboard when max (> 0) exist already.
	Create(ctx context.Context, d Dashboard, max int) (Dashboard, error)
	Get(ctx context.Context, name string) (Dashboard, error)
	List(ctx context.Context, after string, limit int) ([]Dashboard, error)
	// Update replaces Title and Widgets of d.Name, increments Version
	// and sets UpdatedAt to now. ifVersion > 0 must be the stored
	// version, or the update is a conflict wrapping ErrStaleVersion.
	Update(ctx context.Context, d Dashboard, ifVersion int64) (Dashboard, error)
	// Delete deletes a dashboard; ifVersion as in Update.
	Delete(ctx context.Context, name string, ifVersion int64) error
}

// StatsPoint is one point of the overview's history: the messages
// received in the interval before Time, the things connected and the
// alarms open at Time.
type StatsPoint struct {
	Time         time.Time
	Interval     time.Duration // the time Messages were counted over
	Messages     int64
	Connected    int
	ActiveAlarms int
}

// StatsHistoryStore keeps the overview's history.
type StatsHistoryStore interface {
	// Append stores p (replacing a point of the same Time) and deletes
	// the points older than before, in one transaction.
	Append(ctx context.Context, p StatsPoint, before time.Time) error
	// Since returns the points at or after since, oldest first, at most
	// limit (1..100000; 0 means 100000) of the newest.
	Since(ctx context.Context, since time.Time, limit int) ([]StatsPoint, error)
}

// AuditEntry is one record of the audit log (internal/audit): who changed
// what, when, from where and with which result. Before and After are the
// JSON documents of the target around the change, already redacted by the
// recorder; nil when there is none or it was too large (Omitted).
type AuditEntry struct {
	ID         string // time-ordered: IDs sort as the entries were recorded
	Time       time.Time
	ActorKind  string // user, token, device, system
	ActorName  string
	ActorID    string // the token id; "" for others
	Action     string // e.g. thing.create
	TargetKind string // e.g. thing
	TargetName string
	Status     int // HTTP status of the request
	Source     string
	RequestID  string
	Before     []byte
	After      []byte
	Omitted    bool // a document was larger than the limit and left out
}

// AuditFilter selects audit entries. Zero fields do not filter.
type AuditFilter struct {
	Actor        string    // ActorName
	Action       string    // exact, or a prefix when it ends in "*" ("thing.*")
	TargetKind   string    //
	TargetName   string    //
	Since, Until time.Time // Since <= Time < Until
	After        string    // cursor: the ID of the last entry of the previous page
	Limit        int       // 1..1000; 0 means 100
}

// AuditStore keeps the audit log. It is append-only: there is no update
// and no delete but Prune, which removes entries by age.
type AuditStore interface {
	// Append stores a batch of entries in one transaction; an ID that
	// exists already is a core.Conflict and nothing of the batch is kept.
	Append(ctx context.Context, entries []AuditEntry) error
	// List returns the entries that match f, newest (highest ID) first,
	// those with an ID below f.After when it is set.
	List(ctx context.Context, f AuditFilter) ([]AuditEntry, error)
	// Prune deletes the entries recorded before t and returns how many.
	Prune(ctx context.Context, before time.Time) (int64, error)
}
