package users

import (
	"bytes"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

// clock is a settable time for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newService returns a Service on a real SQLite store in a temp dir, with
// bcrypt's cheapest cost and a clock the test moves.
func newService(t *testing.T, ttl time.Duration) (*Service, store.UserStore, *clock) {
	t.Helper()
	st, err := sqlite.Open(sqlitetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := New(Options{Store: st.Users(), SessionTTL: ttl, Cost: bcrypt.MinCost, Now: c.now})
	return s, st.Users(), c
}

func TestPasswordHashing(t *testing.T) {
	s, st, _ := newService(t, time.Hour)
	ctx := t.Context()
	const pw = "correct horse"
	if _, err := s.Create(ctx, "ann", pw, RoleOperator); err != nil {
		t.Fatal(err)
	}
	u, err := st.Get(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(u.PasswordHash, []byte(pw)) {
		t.Fatal("the stored hash contains the password")
	}
	if cost, err := bcrypt.Cost(u.PasswordHash); err != nil || cost != bcrypt.MinCost {
		t.Errorf("bcrypt.Cost(stored hash) = %d, %v; want %d", cost, err, bcrypt.MinCost)
	}
	if err := bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(pw)); err != nil {
		t.Errorf("the stored hash does not verify the password: %v", err)
	}

	id, got, err := s.Login(ctx, "ann", pw, "10.0.0.1")
	if err != nil || id == "" || got.Name != "ann" || got.Role != RoleOperator {
		t.Fatalf("Login(right password) = %q, %+v, %v; want a session of ann", id, got, err)
	}
	// The store keeps the SHA-256 of the session id, not the id.
	if _, err := st.GetSession(ctx, []byte(id)); !core.IsNotFound(err) {
		t.Errorf("GetSession(raw id) = %v; want not found (only the hash is stored)", err)
	}
	if _, err := st.GetSession(ctx, hashID(id)); err != nil {
		t.Errorf("GetSession(hash of id) = %v", err)
	}

	// A wrong password and an unknown user get the same answer.
	_, _, errWrong := s.Login(ctx, "ann", "wrong password", "10.0.0.1")
	_, _, errUnknown := s.Login(ctx, "bob", pw, "10.0.0.1")
	for name, err := range map[string]error{"wrong password": errWrong, "unknown user": errUnknown} {
		if core.KindOf(err) != core.KindUnauthorized || err.Error() != errBadLogin.Error() {
			t.Errorf("Login(%s) = %v; want %v", name, err, errBadLogin)
		}
	}

	// Changing the password ends sessions and the old one stops working.
	if _, err := s.SetPassword(ctx, "ann", "another password"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, id); core.KindOf(err) != core.KindUnauthorized {
		t.Errorf("Authenticate after SetPassword = %v; want unauthorized", err)
	}
	if _, _, err := s.Login(ctx, "ann", pw, "10.0.0.2"); core.KindOf(err) != core.KindUnauthorized {
		t.Errorf("Login(old password) = %v; want unauthorized", err)
	}
	if _, _, err := s.Login(ctx, "ann", "another password", "10.0.0.2"); err != nil {
		t.Errorf("Login(new password) = %v", err)
	}
}

func TestCreateValidates(t *testing.T) {
	s, _, _ := newService(t, time.Hour)
	for _, tc := range []struct {
		name, user, pw, role, field string
	}{
		{"short password", "a", "short", RoleViewer, "password"},
		{"long password", "a", string(bytes.Repeat([]byte("x"), 73)), RoleViewer, "password"},
		{"bad role", "a", "long enough", "root", "role"},
		{"space in name", "a b", "long enough", RoleViewer, "name"},
		{"empty name", "", "long enough", RoleViewer, "name"},
	} {
		_, err := s.Create(t.Context(), tc.user, tc.pw, tc.role)
		if core.KindOf(err) != core.KindInvalid || core.FieldOf(err) != tc.field {
			t.Errorf("%s: Create = %v; want invalid %s", tc.name, err, tc.field)
		}
	}
}

func TestSessionSlidingExpiry(t *testing.T) {
	const ttl = time.Hour
	s, st, c := newService(t, ttl)
	ctx := t.Context()
	if _, err := s.Create(ctx, "ann", "correct horse", RoleViewer); err != nil {
		t.Fatal(err)
	}
	id, _, err := s.Login(ctx, "ann", "correct horse", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	expiry := func() time.Time {
		t.Helper()
		sess, err := st.GetSession(ctx, hashID(id))
		if err != nil {
			t.Fatalf("GetSession: %v", err)
		}
		return sess.ExpiresAt
	}
	start := c.now()
	if got := expiry(); !got.Equal(start.Add(ttl)) {
		t.Fatalf("expiry after login = %v; want %v", got, start.Add(ttl))
	}

	// Use within the TTL slides the expiry to now+TTL...
	c.advance(50 * time.Minute)
	if _, err := s.Authenticate(ctx, id); err != nil {
		t.Fatalf("Authenticate after 50m: %v", err)
	}
	slid := c.now().Add(ttl)
	if got := expiry(); !got.Equal(slid) {
		t.Fatalf("expiry after use at 50m = %v; want %v", got, slid)
	}
	// ...written at most once a minute.
	c.advance(30 * time.Second)
	if _, err := s.Authenticate(ctx, id); err != nil {
		t.Fatal(err)
	}
	if got := expiry(); !got.Equal(slid) {
		t.Errorf("expiry after a second use within a minute = %v; want unchanged %v", got, slid)
	}

	// Past the first expiry the session lives on because it was used.
	c.advance(40 * time.Minute) // 1h20m after login
	if _, err := s.Authenticate(ctx, id); err != nil {
		t.Fatalf("Authenticate 1h20m after login, 30m after use: %v", err)
	}

	// Unused for a whole TTL, it ends, and the row is deleted.
	c.advance(ttl)
	if _, err := s.Authenticate(ctx, id); core.KindOf(err) != core.KindUnauthorized {
		t.Fatalf("Authenticate after a TTL unused = %v; want unauthorized", err)
	}
	if _, err := st.GetSession(ctx, hashID(id)); !core.IsNotFound(err) {
		t.Errorf("GetSession of an expired session = %v; want it deleted", err)
	}

	// Logout ends a session at once; Expire removes the unused ones.
	id2, _, err := s.Login(ctx, "ann", "correct horse", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Logout(ctx, id2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, id2); core.KindOf(err) != core.KindUnauthorized {
		t.Errorf("Authenticate after Logout = %v; want unauthorized", err)
	}
	if _, _, err := s.Login(ctx, "ann", "correct horse", "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	c.advance(ttl + time.Second)
	if n, err := s.Expire(ctx); err != nil || n != 1 {
		t.Errorf("Expire = %d, %v; want 1 session deleted", n, err)
	}
	if _, err := s.Authenticate(ctx, ""); core.KindOf(err) != core.KindUnauthorized {
		t.Errorf("Authenticate(\"\") = %v; want unauthorized", err)
	}
}

func TestLoginFailureLimit(t *testing.T) {
	s, _, c := newService(t, time.Hour)
	ctx := t.Context()
	const pw = "correct horse"
	for _, name := range []string{"ann", "bob"} {
		if _, err := s.Create(ctx, name, pw, RoleViewer); err != nil {
			t.Fatal(err)
		}
	}

	// Per user name and address: after maxFailures wrong passwords for
	// ann from one address, even the right one is refused from there
	// until the window has passed...
	for range maxFailures {
		if _, _, err := s.Login(ctx, "ann", "wrong password", "10.0.0.1"); core.KindOf(err) != core.KindUnauthorized {
			t.Fatalf("failure = %v; want unauthorized", err)
		}
	}
	if _, _, err := s.Login(ctx, "ann", pw, "10.0.0.1"); core.KindOf(err) != core.KindRateLimited {
		t.Fatalf("Login after %d failures = %v; want rate limited", maxFailures, err)
	}
	// ...but not from another address: a flood of wrong passwords cannot
	// lock a user (the admin) out of its own place.
	if _, _, err := s.Login(ctx, "ann", pw, "10.0.9.9"); err != nil {
		t.Errorf("Login from another address after failures elsewhere = %v", err)
	}
	// Failures of ann spread over many addresses do not lock ann out.
	for i := range 2 * maxFailures {
		s.Login(ctx, "ann", "wrong password", "10.0.1."+strconv.Itoa(i))
	}
	if _, _, err := s.Login(ctx, "ann", pw, "10.0.9.8"); err != nil {
		t.Errorf("Login after failures spread over other addresses = %v", err)
	}
	c.advance(failureWindow)
	if _, _, err := s.Login(ctx, "ann", pw, "10.0.0.1"); err != nil {
		t.Errorf("Login once the window passed = %v", err)
	}

	// Per address: failures spread over user names still limit the
	// address, not another one.
	for i := range maxFailures {
		if _, _, err := s.Login(ctx, "guess"+string(rune('a'+i)), pw, "192.0.2.1"); core.KindOf(err) != core.KindUnauthorized {
			t.Fatalf("guess %d = %v; want unauthorized", i+1, err)
		}
	}
	if _, _, err := s.Login(ctx, "bob", pw, "192.0.2.1"); core.KindOf(err) != core.KindRateLimited {
		t.Errorf("Login from an address with %d failures = %v; want rate limited", maxFailures, err)
	}
	if _, _, err := s.Login(ctx, "bob", pw, "192.0.2.2"); err != nil {
		t.Errorf("Login from another address = %v", err)
	}
}

func TestEnsureAdmin(t *testing.T) {
	s, st, _ := newService(t, time.Hour)
	ctx := t.Context()
	pw, err := s.EnsureAdmin(ctx)
	if err != nil || len(pw) < MinPasswordLen {
		t.Fatalf("EnsureAdmin on first start = %q, %v; want a generated password", pw, err)
	}
	u, err := st.Get(ctx, AdminUser)
	if err != nil || u.Role != RoleAdmin {
		t.Fatalf("admin user = %+v, %v; want role admin", u, err)
	}
	if _, _, err := s.Login(ctx, AdminUser, pw, "10.0.0.1"); err != nil {
		t.Errorf("Login with the generated password = %v", err)
	}
	// Users exist: nothing is created, no password returned.
	if pw2, err := s.EnsureAdmin(ctx); err != nil || pw2 != "" {
		t.Errorf("EnsureAdmin with users = %q, %v; want \"\"", pw2, err)
	}
	if list, _ := st.List(ctx); len(list) != 1 {
		t.Errorf("users after a second EnsureAdmin = %d; want 1", len(list))
	}

	// A lost admin account is recovered by setting its password (the
	// last admin cannot be deleted: another admin deleted it).
	if _, err := s.Create(ctx, "other-admin", "some password", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, AdminUser); err != nil {
		t.Fatal(err)
	}
	if u, err := s.SetPassword(ctx, AdminUser, "recovered pw"); err != nil || u.Role != RoleAdmin {
		t.Fatalf("SetPassword(missing admin) = %+v, %v; want it created as admin", u, err)
	}
	if _, _, err := s.Login(ctx, AdminUser, "recovered pw", "10.0.0.1"); err != nil {
		t.Errorf("Login after recovery = %v", err)
	}
	// Only the admin is created that way.
	if _, err := s.SetPassword(ctx, "nobody", "some password"); !core.IsNotFound(err) {
		t.Errorf("SetPassword(unknown user) = %v; want not found", err)
	}
}

func TestUpdateDeleteChangePassword(t *testing.T) {
	s, _, _ := newService(t, time.Hour)
	ctx := t.Context()
	if _, err := s.CreateScoped(ctx, "root", "root password", RoleAdmin, nil); err != nil {
		t.Fatal(err)
	}
	u, err := s.CreateScoped(ctx, "ops", "ops password", RoleOperator, []string{"plant-4", "plant-3", "plant-4"})
	if err != nil || !slices.Equal(u.Groups, []string{"plant-3", "plant-4"}) {
		t.Fatalf("CreateScoped = %+v, %v; want groups plant-3, plant-4 (sorted, once)", u, err)
	}
	if _, err := s.CreateScoped(ctx, "bad", "bad password", RoleOperator, []string{"no such/name"}); core.KindOf(err) != core.KindInvalid {
		t.Errorf("CreateScoped(bad group name) = %v; want invalid", err)
	}
	if _, err := s.Update(ctx, "ops", "superuser", nil); core.KindOf(err) != core.KindInvalid {
		t.Errorf("Update(bad role) = %v; want invalid", err)
	}
	if _, err := s.Update(ctx, "root", RoleViewer, nil); core.KindOf(err) != core.KindConflict {
		t.Errorf("Update(demote the last admin) = %v; want conflict", err)
	}
	if err := s.Delete(ctx, "root"); core.KindOf(err) != core.KindConflict {
		t.Errorf("Delete(the last admin) = %v; want conflict", err)
	}

	// Changing one's own password needs the current one.
	id, _, err := s.Login(ctx, "ops", "ops password", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ChangePassword(ctx, "ops", "wrong password", "new ops password", "10.0.0.1"); core.KindOf(err) != core.KindForbidden {
		t.Errorf("ChangePassword(wrong old) = %v; want forbidden", err)
	}
	if _, err := s.ChangePassword(ctx, "ops", "ops password", "short", "10.0.0.1"); core.KindOf(err) != core.KindInvalid {
		t.Errorf("ChangePassword(short new) = %v; want invalid", err)
	}
	if _, err := s.ChangePassword(ctx, "ops", "ops password", "new ops password", "10.0.0.1"); err != nil {
		t.Fatalf("ChangePassword = %v", err)
	}
	if _, err := s.Authenticate(ctx, id); core.KindOf(err) != core.KindUnauthorized {
		t.Errorf("session after a password change = %v; want ended", err)
	}
	if _, _, err := s.Login(ctx, "ops", "new ops password", "10.0.0.1"); err != nil {
		t.Errorf("Login(new password) = %v", err)
	}
	if err := s.Delete(ctx, "ops"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "ops"); !core.IsNotFound(err) {
		t.Errorf("Get(deleted) = %v; want not found", err)
	}
}

func TestLimitsAreSettings(t *testing.T) {
	st, err := sqlite.Open(sqlitetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	s := New(Options{Store: st.Users(), Cost: bcrypt.MinCost, MaxFailures: 2, MaxScopeGroups: 1})
	ctx := t.Context()
	if _, err := s.CreateScoped(ctx, "ann", "ann password", RoleViewer, []string{"a", "b"}); core.KindOf(err) != core.KindInvalid {
		t.Errorf("two groups with --scope-max-groups 1: %v; want invalid", err)
	}
	if _, err := s.CreateScoped(ctx, "ann", "ann password", RoleViewer, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		s.Login(ctx, "ann", "wrong password", "10.0.0.1")
	}
	if _, _, err := s.Login(ctx, "ann", "ann password", "10.0.0.1"); core.KindOf(err) != core.KindRateLimited {
		t.Errorf("login after 2 failures with --login-max-failures 2: %v; want rate limited", err)
	}
}
