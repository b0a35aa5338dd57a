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
		_, err := s.Users().Create(ctx, store.User{Name: "alice", PasswordHash: []byte("h1"), Role: "admin"})
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
}
