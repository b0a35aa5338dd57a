package sqlite

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
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
	version, migration := 0, ""
	for _, m := range ms {
		if strings.HasSuffix(m.Name, "_policy_deny_subscribe_receive.sql") {
			version, migration = m.Version, m.SQL
		}
	}
	if version == 0 {
		t.Fatal("no policy_deny_subscribe_receive migration")
	}

	path := filepath.Join(t.TempDir(), "mote.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// Back to before the migration, with policies written then.
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
		if _, err := s.w.Exec(`INSERT INTO policies (name, document, created_at, updated_at) VALUES (?, ?, 1, 1)`, name, doc); err != nil {
			t.Fatal(err)
		}
	}
	// Apply the migration's SQL again to these rows (re-running every
	// later migration through Open would fail on the ones that add a
	// column, such as 0010).
	if _, err := s.w.Exec(migration); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path)
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
