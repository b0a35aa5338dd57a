package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/sqlitedb"
)

// The policy migration (0009) adds "receive" to every deny statement with
// "subscribe" and without "receive", so that a stored policy keeps hiding
// what it hid now that a deny on subscribe no longer implies receive. The
// rest is kept as it was: other statements and their order, allows,
// denies that already have receive, documents that are not JSON.
func TestMigratePolicyDenySubscribe(t *testing.T) {
	ms, err := schema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	version := 0
	for _, m := range ms {
		if strings.HasSuffix(m.Name, "_policy_deny_subscribe_receive.sql") {
			version = m.Version
		}
	}
	if version == 0 {
		t.Fatal("no policy_deny_subscribe_receive migration")
	}

	// A database made by the migrations before it (not by rolling the
	// version back: later migrations need not be repeatable), with
	// policies written then.
	path := filepath.Join(t.TempDir(), "mote.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlitedb.Apply(context.Background(), db, path, "sqlite", ms[:version-1]); err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{
		"deny-sub": `{"statements": [
			{"effect": "allow", "actions": ["publish", "subscribe"], "topics": ["#"]},
			{"effect": "deny", "actions": ["subscribe"], "topics": ["test/nosubscribe", "x/#"]},
			{"effect": "deny", "actions": ["publish", "subscribe"], "topics": ["y"]},
			{"effect": "deny", "actions": ["subscribe", "receive"], "topics": ["z"]}
		]}`,
		"unchanged": `{"statements": [{"effect": "allow", "actions": ["subscribe"], "topics": ["a/#"]}, {"effect": "deny", "actions": ["receive"], "topics": ["a/b"]}]}`,
		"not-json":  `not json`,
		"empty":     ``,
	}
	want := map[string]string{
		"deny-sub": `{"statements": [
			{"effect": "allow", "actions": ["publish", "subscribe"], "topics": ["#"]},
			{"effect": "deny", "actions": ["subscribe", "receive"], "topics": ["test/nosubscribe", "x/#"]},
			{"effect": "deny", "actions": ["publish", "subscribe", "receive"], "topics": ["y"]},
			{"effect": "deny", "actions": ["subscribe", "receive"], "topics": ["z"]}
		]}`,
	}
	for name, doc := range docs {
		if _, err := db.Exec(`INSERT INTO policies (name, document, created_at, updated_at) VALUES (?, ?, 1, 1)`, name, doc); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(path) // applies it
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for name, doc := range docs {
		p, err := s.Policies().Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		w, ok := want[name]
		if !ok {
			if string(p.Document) != doc {
				t.Errorf("policy %s = %s; want it unchanged: %s", name, p.Document, doc)
			}
			continue
		}
		var got, exp any
		if err := json.Unmarshal(p.Document, &got); err != nil {
			t.Fatalf("policy %s after the migration: %v: %s", name, err, p.Document)
		}
		if err := json.Unmarshal([]byte(w), &exp); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, exp) {
			t.Errorf("policy %s = %s; want %s", name, p.Document, w)
		}
	}
}
