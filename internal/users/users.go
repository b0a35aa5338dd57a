// Package users is who signs in to the web console: users with a role
// and a bcrypt-hashed password, and their sessions. A session id is a
// 256-bit random value the browser keeps in an HttpOnly cookie; the store
// keeps only its SHA-256, and a session expires after Options.SessionTTL
// without use (sliding). Failed logins are limited per user name and per
// client address, so a password cannot be guessed at speed.
package users

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Roles are the API roles of the registry (admin, operator, viewer).
const (
	RoleAdmin    = "admin"
	RoleOperator = "operator"
	RoleViewer   = "viewer"
)

// AdminUser is the user created on first start.
const AdminUser = "admin"

// Defaults.
const (
	DefaultSessionTTL = 12 * time.Hour
	// MinPasswordLen is the shortest password accepted.
	MinPasswordLen = 8
	// maxPasswordLen is bcrypt's limit.
	maxPasswordLen = 72
	// extendEvery: a session's expiry is written at most this often.
	extendEvery = time.Minute
	// Failed logins: at most maxFailures per key within failureWindow.
	maxFailures   = 5
	failureWindow = time.Minute
)

// Options configure a Service.
type Options struct {
	Store      store.UserStore
	SessionTTL time.Duration // 0: DefaultSessionTTL
	Cost       int           // bcrypt cost; 0: bcrypt.DefaultCost
	// MaxFailures is the failed logins allowed a minute per address and
	// per user from one address (0: 5); MaxScopeGroups bounds a group
	// scope (0: DefaultMaxScopeGroups).
	MaxFailures    int
	MaxScopeGroups int
	Logger         *slog.Logger
	Now            func() time.Time // for tests; nil: time.Now
}

// Service manages users and sessions.
type Service struct {
	st   store.UserStore
	ttl  time.Duration
	cost int
	log  *slog.Logger

	maxFailures, maxScope int
	now                   func() time.Time

	mu       sync.Mutex
	failures map[string][]time.Time // "user:NAME" or "addr:IP" → recent failures
	extended map[string]time.Time   // session hash → when its expiry was last written

	dummy []byte // a hash to compare against for unknown users (same timing)
}

// New returns a Service.
func New(o Options) *Service {
	s := &Service{st: o.Store, ttl: o.SessionTTL, cost: o.Cost, log: o.Logger, now: o.Now,
		failures: map[string][]time.Time{}, extended: map[string]time.Time{}}
	if s.ttl <= 0 {
		s.ttl = DefaultSessionTTL
	}
	if s.cost == 0 {
		s.cost = bcrypt.DefaultCost
	}
	s.maxFailures, s.maxScope = o.MaxFailures, o.MaxScopeGroups
	if s.maxFailures <= 0 {
		s.maxFailures = maxFailures
	}
	if s.maxScope <= 0 {
		s.maxScope = DefaultMaxScopeGroups
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.dummy, _ = bcrypt.GenerateFromPassword([]byte("not a password of anyone"), s.cost)
	return s
}

// SessionTTL is how long a session lasts without use.
func (s *Service) SessionTTL() time.Duration { return s.ttl }

// NewPassword returns a random password for a generated account (128 bits).
func NewPassword() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("users: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// ValidPassword checks a password a person chose.
func ValidPassword(p string) error {
	switch {
	case !utf8.ValidString(p):
		return core.Invalid("password", "password must be UTF-8 text")
	case utf8.RuneCountInString(p) < MinPasswordLen:
		return core.Invalid("password", "password must be at least %d characters", MinPasswordLen)
	case len(p) > maxPasswordLen:
		return core.Invalid("password", "password must be at most %d bytes", maxPasswordLen)
	}
	return nil
}

func validName(name string) error {
	if name == "" || len(name) > 128 {
		return core.Invalid("name", "user name must be 1 to 128 characters")
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return core.Invalid("name", "user name must not contain spaces or control characters")
		}
	}
	return nil
}

// Create creates a user.
func (s *Service) Create(ctx context.Context, name, password, role string) (store.User, error) {
	return s.CreateScoped(ctx, name, password, role, nil)
}

// CreateScoped creates a user scoped to groups (none: every thing). The
// caller checks that the groups exist.
func (s *Service) CreateScoped(ctx context.Context, name, password, role string, groups []string) (store.User, error) {
	if err := validName(name); err != nil {
		return store.User{}, err
	}
	if !ValidRole(role) {
		return store.User{}, core.Invalid("role", "role must be admin, operator or viewer")
	}
	groups, err := s.ValidGroups(groups)
	if err != nil {
		return store.User{}, err
	}
	if err := ValidPassword(password); err != nil {
		return store.User{}, err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		return store.User{}, err
	}
	return s.st.Create(ctx, store.User{Name: name, PasswordHash: h, Role: role, Groups: groups})
}

// ValidRole reports whether r is admin, operator or viewer.
func ValidRole(r string) bool { return r == RoleAdmin || r == RoleOperator || r == RoleViewer }

// DefaultMaxScopeGroups bounds the groups of a scope by default.
const DefaultMaxScopeGroups = 32

// MaxScopeGroups is the most groups a scope may name.
func (s *Service) MaxScopeGroups() int { return s.maxScope }

// ValidGroups checks a group scope and returns it sorted without
// repeats (nil for none).
func (s *Service) ValidGroups(groups []string) ([]string, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	if len(groups) > s.maxScope {
		return nil, core.Invalid("groups", "at most %d groups (--scope-max-groups)", s.maxScope)
	}
	for _, g := range groups {
		if err := core.ValidateName("groups", g); err != nil {
			return nil, err
		}
	}
	out := slices.Clone(groups)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Get returns a user.
func (s *Service) Get(ctx context.Context, name string) (store.User, error) {
	return s.st.Get(ctx, name)
}

// List returns every user ordered by name.
func (s *Service) List(ctx context.Context) ([]store.User, error) { return s.st.List(ctx) }

// Update sets a user's role and group scope (nil: every thing).
// Demoting the last admin is core.KindConflict.
func (s *Service) Update(ctx context.Context, name, role string, groups []string) (store.User, error) {
	if !ValidRole(role) {
		return store.User{}, core.Invalid("role", "role must be admin, operator or viewer")
	}
	groups, err := s.ValidGroups(groups)
	if err != nil {
		return store.User{}, err
	}
	return s.st.Update(ctx, store.User{Name: name, Role: role, Groups: groups})
}

// Delete deletes a user with its sessions and API tokens. Deleting the
// last admin is core.KindConflict.
func (s *Service) Delete(ctx context.Context, name string) error {
	return s.st.Delete(ctx, name)
}

// ChangePassword is a user changing its own password: the old one must
// match (failures count like failed logins, per source). It ends the
// user's sessions.
func (s *Service) ChangePassword(ctx context.Context, name, oldPassword, newPassword, addr string) (store.User, error) {
	now := s.now()
	userKey := "user:" + name + "\x00addr:" + addr
	if s.limited(now, userKey, "addr:"+addr) {
		return store.User{}, core.Errorf(core.KindRateLimited, "too many failed attempts; wait a minute and try again")
	}
	u, err := s.st.Get(ctx, name)
	if err != nil {
		return store.User{}, err
	}
	if bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(oldPassword)) != nil {
		s.fail(now, userKey, "addr:"+addr)
		return store.User{}, &core.Error{Kind: core.KindForbidden, Field: "oldPassword", Msg: "the current password is wrong"}
	}
	if err := ValidPassword(newPassword); err != nil {
		return store.User{}, err
	}
	return s.SetPassword(ctx, name, newPassword)
}

// EnsureAdmin creates the admin user with a random password when there
// is no user at all (first start) and returns that password; "" when
// users exist.
func (s *Service) EnsureAdmin(ctx context.Context) (string, error) {
	list, err := s.st.List(ctx)
	if err != nil {
		return "", err
	}
	if len(list) > 0 {
		return "", nil
	}
	pw := NewPassword()
	if _, err := s.Create(ctx, AdminUser, pw, RoleAdmin); err != nil {
		return "", err
	}
	return pw, nil
}

// SetPassword sets a user's password and ends its sessions. A missing
// admin user is created (with role admin): this is how a lost admin
// account is recovered.
func (s *Service) SetPassword(ctx context.Context, name, password string) (store.User, error) {
	if err := ValidPassword(password); err != nil {
		return store.User{}, err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		return store.User{}, err
	}
	u, err := s.st.SetPassword(ctx, name, h)
	if core.IsNotFound(err) && name == AdminUser {
		return s.st.Create(ctx, store.User{Name: name, PasswordHash: h, Role: RoleAdmin})
	}
	return u, err
}

// errBadLogin is the one answer to a wrong user name or password.
var errBadLogin = core.Errorf(core.KindUnauthorized, "wrong user name or password")

// Login checks a user name and password and opens a session. It returns
// the session id for the cookie. addr is the client's address, for the
// failure limit. The password is never logged.
func (s *Service) Login(ctx context.Context, name, password, addr string) (id string, u store.User, err error) {
	now := s.now()
	// Failures count per source and per (user, source): a flood of wrong
	// passwords for "admin" from elsewhere cannot lock the admin out of
	// its own address.
	userKey := "user:" + name + "\x00addr:" + addr
	if s.limited(now, userKey, "addr:"+addr) {
		s.log.Warn("console login refused: too many failures", "user", name, "addr", addr)
		return "", store.User{}, core.Errorf(core.KindRateLimited, "too many failed logins; wait a minute and try again")
	}
	u, err = s.st.Get(ctx, name)
	if err != nil && !core.IsNotFound(err) {
		return "", store.User{}, err
	}
	hash := u.PasswordHash
	if err != nil {
		hash = s.dummy
	}
	if cerr := bcrypt.CompareHashAndPassword(hash, []byte(password)); cerr != nil || err != nil {
		s.fail(now, userKey, "addr:"+addr)
		s.log.Info("console login failed", "user", name, "addr", addr)
		return "", store.User{}, errBadLogin
	}
	id, hashID := newSessionID()
	if err := s.st.CreateSession(ctx, store.Session{IDHash: hashID, User: u.Name, CreatedAt: now, ExpiresAt: now.Add(s.ttl)}); err != nil {
		return "", store.User{}, err
	}
	if err := s.st.RecordLogin(ctx, u.Name, now); err != nil {
		s.log.Warn("cannot record a console login", "user", u.Name, "err", err)
	}
	s.log.Info("console login", "user", u.Name, "addr", addr)
	return id, u, nil
}

// ExternalPasswordHash marks a user that signs in only through single
// sign-on (internal/oidc): it is no bcrypt hash, so no password matches it.
var ExternalPasswordHash = []byte("!external")

// IsExternal reports whether a user signs in only through single sign-on.
func IsExternal(u store.User) bool { return string(u.PasswordHash) == string(ExternalPasswordHash) }

// ExternalLogin opens a session for a user whom an identity provider
// vouched for (single sign-on): the user is created on its first sign-in
// and its role and group scope are set from the provider's claims on
// every sign-in. A local user of that name (one with a password) is not
// taken over: that is core.KindConflict. addr is the client's address,
// for the log.
func (s *Service) ExternalLogin(ctx context.Context, name, role string, groups []string, addr string) (id string, u store.User, err error) {
	if err := validName(name); err != nil {
		return "", store.User{}, err
	}
	if !ValidRole(role) {
		return "", store.User{}, core.Invalid("role", "role must be admin, operator or viewer")
	}
	if groups, err = s.ValidGroups(groups); err != nil {
		return "", store.User{}, err
	}
	u, err = s.st.Get(ctx, name)
	switch {
	case core.IsNotFound(err):
		u, err = s.st.Create(ctx, store.User{Name: name, PasswordHash: ExternalPasswordHash, Role: role, Groups: groups})
		if core.KindOf(err) == core.KindConflict { // a concurrent first sign-in
			u, err = s.st.Get(ctx, name)
		}
		if err != nil {
			return "", store.User{}, err
		}
	case err != nil:
		return "", store.User{}, err
	}
	if !IsExternal(u) {
		return "", store.User{}, core.Errorf(core.KindConflict, "user %q exists with a password and does not sign in through single sign-on", name)
	}
	if u.Role != role || !slices.Equal(u.Groups, groups) {
		if u, err = s.st.Update(ctx, store.User{Name: name, Role: role, Groups: groups}); err != nil {
			return "", store.User{}, err
		}
	}
	now := s.now()
	id, hashID := newSessionID()
	if err := s.st.CreateSession(ctx, store.Session{IDHash: hashID, User: u.Name, CreatedAt: now, ExpiresAt: now.Add(s.ttl)}); err != nil {
		return "", store.User{}, err
	}
	if err := s.st.RecordLogin(ctx, u.Name, now); err != nil {
		s.log.Warn("cannot record a console login", "user", u.Name, "err", err)
	}
	s.log.Info("console login through single sign-on", "user", u.Name, "role", role, "addr", addr)
	return id, u, nil
}

// Authenticate returns the user of a session id (the cookie value) and
// slides the session's expiry. Any failure is KindUnauthorized.
func (s *Service) Authenticate(ctx context.Context, id string) (store.User, error) {
	bad := core.Errorf(core.KindUnauthorized, "your session has expired or ended; sign in again")
	if id == "" || len(id) > 100 {
		return store.User{}, bad
	}
	h := hashID(id)
	sess, err := s.st.GetSession(ctx, h)
	if err != nil {
		if core.IsNotFound(err) {
			return store.User{}, bad
		}
		return store.User{}, err
	}
	now := s.now()
	if !sess.ExpiresAt.After(now) {
		_ = s.st.DeleteSession(ctx, h)
		return store.User{}, bad
	}
	u, err := s.st.Get(ctx, sess.User)
	if err != nil {
		if core.IsNotFound(err) {
			return store.User{}, bad
		}
		return store.User{}, err
	}
	s.extend(ctx, h, now)
	return u, nil
}

// extend moves a session's expiry to now+ttl, writing at most once per
// extendEvery per session.
func (s *Service) extend(ctx context.Context, h []byte, now time.Time) {
	key := string(h)
	s.mu.Lock()
	last, ok := s.extended[key]
	due := !ok || now.Sub(last) >= extendEvery || now.Before(last)
	if due {
		s.extended[key] = now
		if len(s.extended) > 100_000 { // bounded: forget everything, at worst a few more writes
			clear(s.extended)
		}
	}
	s.mu.Unlock()
	if !due {
		return
	}
	if err := s.st.ExtendSession(ctx, h, now.Add(s.ttl)); err != nil && !core.IsNotFound(err) {
		s.log.Warn("cannot extend a console session", "err", err)
	}
}

// Logout ends a session; an unknown one is not an error.
func (s *Service) Logout(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	h := hashID(id)
	s.mu.Lock()
	delete(s.extended, string(h))
	s.mu.Unlock()
	return s.st.DeleteSession(ctx, h)
}

// Expire deletes expired sessions.
func (s *Service) Expire(ctx context.Context) (int, error) {
	return s.st.DeleteExpiredSessions(ctx, s.now())
}

// RunExpiry deletes expired sessions every interval until ctx ends.
func (s *Service) RunExpiry(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.Expire(ctx); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Warn("cannot delete expired console sessions", "err", err)
			}
		}
	}
}

// limited reports whether any key has had maxFailures failures within
// failureWindow.
func (s *Service) limited(now time.Time, keys ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if len(s.recent(now, k)) >= s.maxFailures {
			return true
		}
	}
	return false
}

func (s *Service) fail(now time.Time, keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) > 10_000 {
		for k := range s.failures {
			if len(s.recent(now, k)) == 0 {
				delete(s.failures, k)
			}
		}
	}
	for _, k := range keys {
		s.failures[k] = append(s.recent(now, k), now)
	}
}

// recent returns the failures of key within the window (mu held).
func (s *Service) recent(now time.Time, key string) []time.Time {
	list := s.failures[key]
	i := 0
	for i < len(list) && now.Sub(list[i]) >= failureWindow {
		i++
	}
	list = list[i:]
	if len(list) == 0 {
		delete(s.failures, key)
		return nil
	}
	s.failures[key] = list
	return list
}

func newSessionID() (id string, hash []byte) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("users: crypto/rand failed: " + err.Error())
	}
	id = base64.RawURLEncoding.EncodeToString(b)
	return id, hashID(id)
}

func hashID(id string) []byte {
	h := sha256.Sum256([]byte(id))
	return h[:]
}
