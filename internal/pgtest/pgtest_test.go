package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestDB checks that two tests get two distinct, empty, writable
// databases.
func TestDB(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := DB(t), DB(t)
	if a == b {
		t.Fatalf("DB returned %s twice", a)
	}
	for _, u := range []string{a, b} {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatalf("connect %s: %v", u, err)
		}
		if _, err := conn.Exec(ctx, `CREATE TABLE x (a int)`); err != nil {
			t.Fatalf("create table in %s: %v", u, err)
		}
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%s has %d tables, want 1 (the databases are not distinct)", u, n)
		}
		conn.Close(ctx)
	}
}
