package storetest

import (
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

func testUsers(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("RoundTrip", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		w := startWindow()
		got, err := s.Users().Create(ctx, store.User{Name: "alice", PasswordHash: []byte("$2a$hash"), Role: "operator"})
		must(t, "Create", err)
		w = w.end()
		eq(t, "Name", got.Name, "alice")
		eq(t, "Role", got.Role, "operator")
		eqBytes(t, "PasswordHash", got.PasswordHash, []byte("$2a$hash"))
		checkNow(t, "CreatedAt", got.CreatedAt, w)
		eqTime(t, "UpdatedAt", got.UpdatedAt, got.CreatedAt)
		if got.LastLoginAt != nil {
			t.Errorf("LastLoginAt = %v; want nil", got.LastLoginAt)
		}
		_, err = s.Users().Create(ctx, store.User{Name: "alice", PasswordHash: []byte("x"), Role: "admin"})
		wantConflict(t, "Create duplicate", err, `user "alice" already exists`)
		_, err = s.Users().Get(ctx, "bob")
		wantNotFound(t, "Get missing", err, "user", "bob")

		must(t, "RecordLogin", s.Users().RecordLogin(ctx, "alice", base))
		got, err = s.Users().Get(ctx, "alice")
		must(t, "Get", err)
		eqTimePtr(t, "LastLoginAt", got.LastLoginAt, msPtr(base))
		wantNotFound(t, "RecordLogin missing", s.Users().RecordLogin(ctx, "bob", base), "user", "bob")

		_, err = s.Users().Create(ctx, store.User{Name: "aaron", PasswordHash: []byte("y"), Role: "viewer", CreatedAt: base})
		must(t, "Create aaron", err)
		list, err := s.Users().List(ctx)
		must(t, "List", err)
		var names []string
		for _, u := range list {
			names = append(names, u.Name)
		}
		eqList(t, "List", names, []string{"aaron", "alice"})
		eqTime(t, "aaron CreatedAt", list[0].CreatedAt, ms(base))

		must(t, "Delete", s.Users().Delete(ctx, "aaron"))
		wantNotFound(t, "Delete again", s.Users().Delete(ctx, "aaron"), "user", "aaron")
	})

	t.Run("Sessions", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Users().Create(ctx, store.User{Name: "alice", PasswordHash: []byte("h1"), Role: "operator"}) // not the last admin: it is deleted below
		must(t, "Create", err)
		exp := base.Add(12 * time.Hour)
		must(t, "CreateSession", s.Users().CreateSession(ctx, store.Session{IDHash: []byte("s1"), User: "alice", CreatedAt: base, ExpiresAt: exp}))
		wantKind(t, "CreateSession duplicate", s.Users().CreateSession(ctx, store.Session{IDHash: []byte("s1"), User: "alice", ExpiresAt: exp}), core.KindConflict)
		wantNotFound(t, "CreateSession unknown user", s.Users().CreateSession(ctx, store.Session{IDHash: []byte("s2"), User: "bob", ExpiresAt: exp}), "user", "bob")

		got, err := s.Users().GetSession(ctx, []byte("s1"))
		must(t, "GetSession", err)
		eq(t, "User", got.User, "alice")
		eqBytes(t, "IDHash", got.IDHash, []byte("s1"))
		eqTime(t, "CreatedAt", got.CreatedAt, ms(base))
		eqTime(t, "ExpiresAt", got.ExpiresAt, ms(exp))
		_, err = s.Users().GetSession(ctx, []byte("nope"))
		wantKind(t, "GetSession missing", err, core.KindNotFound)

		later := exp.Add(time.Hour)
		must(t, "ExtendSession", s.Users().ExtendSession(ctx, []byte("s1"), later))
		got, err = s.Users().GetSession(ctx, []byte("s1"))
		must(t, "GetSession", err)
		eqTime(t, "extended ExpiresAt", got.ExpiresAt, ms(later))
		wantKind(t, "ExtendSession missing", s.Users().ExtendSession(ctx, []byte("nope"), later), core.KindNotFound)

		// Expired sessions are removed; live ones stay.
		must(t, "CreateSession old", s.Users().CreateSession(ctx, store.Session{IDHash: []byte("old"), User: "alice", ExpiresAt: base.Add(-time.Hour)}))
		n, err := s.Users().DeleteExpiredSessions(ctx, base)
		must(t, "DeleteExpiredSessions", err)
		eq(t, "expired deleted", n, 1)
		_, err = s.Users().GetSession(ctx, []byte("old"))
		wantKind(t, "GetSession expired", err, core.KindNotFound)

		must(t, "DeleteSession", s.Users().DeleteSession(ctx, []byte("s1")))
		must(t, "DeleteSession again", s.Users().DeleteSession(ctx, []byte("s1")))
		_, err = s.Users().GetSession(ctx, []byte("s1"))
		wantKind(t, "GetSession deleted", err, core.KindNotFound)

		// A new password ends every session of the user; so does deleting it.
		must(t, "CreateSession s3", s.Users().CreateSession(ctx, store.Session{IDHash: []byte("s3"), User: "alice", ExpiresAt: exp}))
		u, err := s.Users().SetPassword(ctx, "alice", []byte("h2"))
		must(t, "SetPassword", err)
		eqBytes(t, "new hash", u.PasswordHash, []byte("h2"))
		_, err = s.Users().GetSession(ctx, []byte("s3"))
		wantKind(t, "session after SetPassword", err, core.KindNotFound)
		_, err = s.Users().SetPassword(ctx, "bob", []byte("h"))
		wantNotFound(t, "SetPassword missing", err, "user", "bob")

		must(t, "CreateSession s4", s.Users().CreateSession(ctx, store.Session{IDHash: []byte("s4"), User: "alice", ExpiresAt: exp}))
		must(t, "Delete user", s.Users().Delete(ctx, "alice"))
		_, err = s.Users().GetSession(ctx, []byte("s4"))
		wantKind(t, "session after Delete", err, core.KindNotFound)
	})

	t.Run("ScopeAndLastAdmin", func(t *testing.T) { testUserScope(t, open(t)) })
}

// testUserScope: users and tokens keep their group scope, tokens their
// owner and rate limit; the last admin can be neither deleted nor
// demoted; deleting a user deletes its tokens (and only its tokens).
func testUserScope(t *testing.T, s store.Store) {
	ctx := t.Context()
	u, err := s.Users().Create(ctx, store.User{Name: "ops3", PasswordHash: []byte("h"), Role: "operator", Groups: []string{"plant-3", "plant-4"}})
	must(t, "Create scoped", err)
	eqList(t, "Groups", u.Groups, []string{"plant-3", "plant-4"})
	u, err = s.Users().Get(ctx, "ops3")
	must(t, "Get", err)
	eqList(t, "Get Groups", u.Groups, []string{"plant-3", "plant-4"})

	u, err = s.Users().Update(ctx, store.User{Name: "ops3", Role: "viewer", Groups: []string{"plant-5"}})
	must(t, "Update", err)
	eq(t, "updated Role", u.Role, "viewer")
	eqList(t, "updated Groups", u.Groups, []string{"plant-5"})
	eqBytes(t, "hash kept", u.PasswordHash, []byte("h"))
	u, err = s.Users().Update(ctx, store.User{Name: "ops3", Role: "viewer"})
	must(t, "Update unscoped", err)
	if len(u.Groups) != 0 {
		t.Errorf("Groups after unscoping = %v; want none", u.Groups)
	}
	_, err = s.Users().Update(ctx, store.User{Name: "nobody", Role: "viewer"})
	wantNotFound(t, "Update missing", err, "user", "nobody")

	// The last admin stays.
	_, err = s.Users().Create(ctx, store.User{Name: "root", PasswordHash: []byte("h"), Role: "admin"})
	must(t, "Create admin", err)
	wantKind(t, "Delete last admin", s.Users().Delete(ctx, "root"), core.KindConflict)
	_, err = s.Users().Update(ctx, store.User{Name: "root", Role: "operator"})
	wantKind(t, "Demote last admin", err, core.KindConflict)
	_, err = s.Users().Update(ctx, store.User{Name: "ops3", Role: "admin"})
	must(t, "Promote", err)
	_, err = s.Users().Update(ctx, store.User{Name: "root", Role: "operator"})
	must(t, "Demote with another admin", err)
	wantKind(t, "Delete the other, now last, admin", s.Users().Delete(ctx, "ops3"), core.KindConflict)
	_, err = s.Users().Update(ctx, store.User{Name: "root", Role: "admin"})
	must(t, "Promote again", err)

	// Tokens: owner, scope and rate limit round-trip; they go with their user.
	tok, err := s.Tokens().Create(ctx, store.Token{ID: "tu1", Name: "ci", Hash: []byte("hu1"), Role: "viewer", User: "ops3", Groups: []string{"plant-3"}, RateLimit: 60})
	must(t, "Create token", err)
	eq(t, "token User", tok.User, "ops3")
	eqList(t, "token Groups", tok.Groups, []string{"plant-3"})
	eq(t, "token RateLimit", tok.RateLimit, 60)
	tok, err = s.Tokens().Get(ctx, "tu1")
	must(t, "Get token", err)
	eq(t, "Get token User", tok.User, "ops3")
	eqList(t, "Get token Groups", tok.Groups, []string{"plant-3"})
	eq(t, "Get token RateLimit", tok.RateLimit, 60)
	_, err = s.Tokens().Create(ctx, store.Token{ID: "tu2", Name: "other", Hash: []byte("hu2"), Role: "admin", User: "root"})
	must(t, "Create root token", err)
	_, err = s.Tokens().Create(ctx, store.Token{ID: "tu3", Name: "nobody's", Hash: []byte("hu3"), Role: "admin"})
	must(t, "Create token of no user", err)

	must(t, "Delete ops3", s.Users().Delete(ctx, "ops3"))
	_, err = s.Tokens().Get(ctx, "tu1")
	wantKind(t, "token of a deleted user", err, core.KindNotFound)
	_, err = s.Tokens().Get(ctx, "tu2")
	must(t, "another user's token stays", err)
	_, err = s.Tokens().Get(ctx, "tu3")
	must(t, "token of no user stays", err)
}
