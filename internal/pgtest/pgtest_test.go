package pgtest

import (
	"context"
	"os"
	"strings"
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

// TestFindBinaries: PATH first, then Debian's directories; none is "",
// which makes DB skip with NotFound.
func TestFindBinaries(t *testing.T) {
	old := debianBins
	defer func() { debianBins = old }()
	debianBins = t.TempDir() + "/*/bin"
	t.Setenv("PATH", t.TempDir())
	if got := findBinaries(); got != "" {
		t.Fatalf("findBinaries with nothing installed = %q; want \"\"", got)
	}
	dir := t.TempDir()
	for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
		if err := os.WriteFile(dir+"/"+b, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
	if got := findBinaries(); got != dir {
		t.Errorf("findBinaries with them on PATH = %q; want %q", got, dir)
	}
	if !strings.Contains(NotFound, "apt-get install postgresql") {
		t.Errorf("skip message %q does not say how to install", NotFound)
	}
}
