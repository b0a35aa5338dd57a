package cli_test

import (
	"context"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/pgtest"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/registry"
	storepostgres "github.com/moteiot/mote/internal/store/postgres"
	"github.com/moteiot/mote/internal/users"
)

// TestAdminTokenPostgres: `mote admin token --store postgres://...` makes
// a token in the PostgreSQL store that a registry on that store (with the
// data directory's hash key) accepts; MOTE_STORE works as well; a
// database the server never ran on is refused and left without a schema.
func TestAdminTokenPostgres(t *testing.T) {
	ctx := context.Background()
	db := pgtest.DB(t)
	dir := t.TempDir()
	// What a first `mote serve --store db --data-dir dir` leaves.
	st, err := storepostgres.Open(ctx, db, storepostgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h, err := auth.LoadOrCreateHasher(datadir.HashKey(dir))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(datadir.PKI(dir))
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Options{Store: st, Hasher: h, CA: ca})

	out, errOut, code := run(t, "admin", "token", "--data-dir", dir, "--store", db)
	if code != 0 || errOut != "" {
		t.Fatalf("admin token --store: exit %d, stderr %q", code, errOut)
	}
	if tk, err := reg.AuthenticateToken(ctx, strings.TrimSpace(out)); err != nil || tk.Role != registry.RoleAdmin {
		t.Errorf("token from admin token --store: %v %+v; want an admin token", err, tk)
	}

	t.Setenv("MOTE_STORE", db)
	out, _, code = run(t, "admin", "token", "--data-dir", dir, "--role", "viewer")
	if code != 0 {
		t.Fatalf("admin token with MOTE_STORE: exit %d", code)
	}
	if tk, err := reg.AuthenticateToken(ctx, strings.TrimSpace(out)); err != nil || tk.Role != registry.RoleViewer {
		t.Errorf("token from MOTE_STORE: %v %+v; want a viewer token in PostgreSQL", err, tk)
	}

	// admin password --store sets the console password in PostgreSQL
	// (creating the admin user, which this store does not have yet).
	if _, err := st.Users().Get(ctx, users.AdminUser); err == nil {
		t.Fatal("the admin user exists before admin password")
	}
	if _, errOut, code := runIn(t, "a new long passphrase\n", "admin", "password", "--data-dir", dir, "--password-stdin"); code != 0 {
		t.Errorf("admin password --store (from MOTE_STORE): exit %d %s", code, errOut)
	}
	u, err := st.Users().Get(ctx, users.AdminUser)
	if err != nil || bcrypt.CompareHashAndPassword(u.PasswordHash, []byte("a new long passphrase")) != nil {
		t.Errorf("admin user in PostgreSQL after admin password: %v; want the new password", err)
	}

	// A database the server never ran on.
	empty := pgtest.DB(t)
	if _, errOut, code := run(t, "admin", "token", "--data-dir", dir, "--store", empty); code != 3 || !strings.Contains(errOut, "no Mote data") {
		t.Errorf("admin token on an empty database: exit %d %q; want 3 and no Mote data", code, errOut)
	}
	if _, errOut, code := run(t, "admin", "token", "--data-dir", dir, "--store", "/tmp/x.db"); code != 2 || !strings.Contains(errOut, "--store") {
		t.Errorf("admin token --store not a URL: exit %d %q; want a usage error naming --store", code, errOut)
	}
}

// TestAdminMigrateStore: the command copies a data directory into an empty
// database and prints the verified tables; a second run into the same
// database is refused (exit 4, conflict).
func TestAdminMigrateStore(t *testing.T) {
	dir := t.TempDir()
	openDataDir(t, dir) // bootstraps the built-in policies and rules
	db := pgtest.DB(t)
	out, errOut, code := run(t, "admin", "migrate-store", "--from", dir, "--to", db)
	if code != 0 {
		t.Fatalf("migrate-store: exit %d\n%s", code, errOut)
	}
	if !strings.Contains(out, "policies") || !strings.Contains(out, "sha256:") || !strings.Contains(out, "verified") {
		t.Errorf("migrate-store output:\n%s", out)
	}
	st, err := storepostgres.Open(context.Background(), db, storepostgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if list, err := st.Policies().List(context.Background(), "", 0); err != nil || len(list) == 0 {
		t.Errorf("policies in PostgreSQL after migrate-store: %d, %v; want the built-in ones", len(list), err)
	}
	if _, errOut, code := run(t, "admin", "migrate-store", "--from", dir, "--to", db); code != 4 || !strings.Contains(errOut, "not empty") {
		t.Errorf("second migrate-store: exit %d %q; want 4 and not empty", code, errOut)
	}
	if _, _, code := run(t, "admin", "migrate-store", "--from", dir); code != 2 {
		t.Errorf("migrate-store without --to: exit %d; want 2", code)
	}
}
