package httpapi

import (
	"os"
	"regexp"
	"testing"
)

// TestUsersDocScopeTable: docs/users.md lists every authenticated route
// with its role and scope rule as the route table has them.
func TestUsersDocScopeTable(t *testing.T) {
	b, err := os.ReadFile("../../docs/users.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([A-Z]+) (/[^`]*)` \\| ([a-z]+) \\| ([a-z]+) \\|$")
	documented := map[string][2]string{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		documented[m[1]+" "+m[2]] = [2]string{m[3], m[4]}
	}
	n := 0
	for _, rt := range (&server{}).routes() {
		if rt.role == rolePublic || rt.role == roleDevice {
			continue
		}
		n++
		key := rt.method + " " + rt.path
		want := [2]string{rt.role, scopeRuleOf(rt).String()}
		if got, ok := documented[key]; !ok {
			t.Errorf("docs/users.md: no row for %s (want | `%s` | %s | %s |)", key, key, want[0], want[1])
		} else if got != want {
			t.Errorf("docs/users.md: %s is documented as %v; the route table says %v", key, got, want)
		}
		delete(documented, key)
	}
	for k := range documented {
		t.Errorf("docs/users.md documents %s, which is not an authenticated route", k)
	}
	if n == 0 {
		t.Fatal("no authenticated routes")
	}
}
