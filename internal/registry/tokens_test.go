package registry

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// clock is a settable time source for r.now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestCreateTokenValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	past := time.Now().Add(-time.Second)
	tests := []struct {
		name, role string
		expires    *time.Time
		field      string
	}{
		{"", RoleAdmin, nil, "name"},
		{strings.Repeat("n", 129), RoleAdmin, nil, "name"},
		{"ci\nbot", RoleAdmin, nil, "name"},
		{"ci", "root", nil, "role"},
		{"ci", RoleViewer, &past, "expiresAt"},
	}
	for _, tt := range tests {
		_, raw, err := e.reg.CreateToken(ctx, tt.name, tt.role, tt.expires)
		checkErr(t, "CreateToken("+tt.name+", "+tt.role+")", err, core.KindInvalid, tt.field)
		if raw != "" {
			t.Errorf("CreateToken(%q, %q) returned a token with an error", tt.name, tt.role)
		}
	}
	tok, raw, err := e.reg.CreateToken(ctx, "ci", "", nil)
	if err != nil {
		t.Fatalf("CreateToken(ci, \"\") = %v", err)
	}
	if tok.Role != RoleAdmin {
		t.Errorf("CreateToken(ci, \"\").Role = %q; want %q", tok.Role, RoleAdmin)
	}
	if want := "mote." + tok.ID + "."; !strings.HasPrefix(raw, want) || len(raw) != len(want)+43 {
		t.Errorf("CreateToken(ci) token = %q; want %s<43 characters>", raw, want)
	}
}

func TestAuthenticateToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	clk := &clock{t: time.Now().UTC().Truncate(time.Millisecond)}
	e.reg.now = clk.now

	tok, raw, err := e.reg.CreateToken(ctx, "ci", RoleOperator, nil)
	if err != nil {
		t.Fatal(err)
	}
	expiry := clk.t.Add(time.Hour)
	short, shortRaw, err := e.reg.CreateToken(ctx, "short", RoleViewer, &expiry)
	if err != nil {
		t.Fatal(err)
	}
	_, otherRaw, err := e.reg.CreateToken(ctx, "other", RoleViewer, nil)
	if err != nil {
		t.Fatal(err)
	}

	got, err := e.reg.AuthenticateToken(ctx, raw)
	if err != nil {
		t.Fatalf("AuthenticateToken(valid) = %v; want nil", err)
	}
	if got.ID != tok.ID || got.Role != RoleOperator || got.Name != "ci" {
		t.Errorf("AuthenticateToken(valid) = %s %s %s; want %s ci operator", got.ID, got.Name, got.Role, tok.ID)
	}
	if got, err := e.reg.AuthenticateToken(ctx, shortRaw); err != nil || got.ID != short.ID {
		t.Errorf("AuthenticateToken(unexpired) = %s, %v; want %s", got.ID, err, short.ID)
	}

	secret := raw[strings.LastIndexByte(raw, '.')+1:]
	otherSecret := otherRaw[strings.LastIndexByte(otherRaw, '.')+1:]
	refused := []struct {
		name, raw string
	}{
		{"empty", ""},
		{"prefix only", "mote."},
		{"no secret", "mote." + tok.ID},
		{"empty secret", "mote." + tok.ID + "."},
		{"empty id", "mote.." + secret},
		{"no prefix", tok.ID + "." + secret},
		{"bearer", "Bearer " + raw},
		{"other prefix", "moto." + tok.ID + "." + secret},
		{"wrong secret", "mote." + tok.ID + "." + otherSecret},
		{"secret with suffix", raw + "x"},
		{"secret truncated", raw[:len(raw)-1]},
		{"extra part", raw + ".x"},
		{"unknown id", "mote.tok_AAAAAAAAAAAAAAAA." + secret},
		{"trailing space", raw + " "},
	}
	const want = "invalid or expired API token"
	check := func(name, raw string) {
		t.Helper()
		_, err := e.reg.AuthenticateToken(ctx, raw)
		checkErr(t, "AuthenticateToken("+name+")", err, core.KindUnauthorized, "")
		if err == nil {
			return
		}
		if err.Error() != want {
			t.Errorf("AuthenticateToken(%s) = %q; want %q", name, err, want)
		}
		for _, part := range []string{secret, otherSecret, raw} {
			if len(part) > 5 && strings.Contains(err.Error(), part) {
				t.Errorf("AuthenticateToken(%s) = %q; it echoes the token", name, err)
			}
		}
	}
	for _, tt := range refused {
		check(tt.name, tt.raw)
	}

	clk.advance(time.Hour)
	check("expired", shortRaw)
	clk.advance(-time.Millisecond)
	if _, err := e.reg.AuthenticateToken(ctx, shortRaw); err != nil {
		t.Errorf("AuthenticateToken(a millisecond before expiry) = %v; want nil", err)
	}

	if err := e.reg.DeleteToken(ctx, tok.ID); err != nil {
		t.Fatalf("DeleteToken = %v", err)
	}
	check("deleted", raw)
	if err := e.reg.DeleteToken(ctx, tok.ID); !core.IsNotFound(err) {
		t.Errorf("DeleteToken(deleted) = %v; want not found", err)
	}
	list, err := e.reg.ListTokens(ctx)
	if err != nil || len(list) != 2 {
		t.Errorf("ListTokens() after delete = %d tokens, %v; want 2", len(list), err)
	}
}

func TestAuthenticateTokenRecordsUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	start := time.Now().UTC().Truncate(time.Millisecond)
	clk := &clock{t: start}
	e.reg.now = clk.now

	tok, raw, err := e.reg.CreateToken(ctx, "ci", RoleAdmin, nil)
	if err != nil {
		t.Fatal(err)
	}
	lastUsed := func() *time.Time {
		t.Helper()
		got, err := e.st.Tokens().Get(ctx, tok.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.LastUsedAt
	}
	if lu := lastUsed(); lu != nil {
		t.Fatalf("LastUsedAt of a new token = %v; want nil", lu)
	}
	if _, err := e.reg.AuthenticateToken(ctx, "mote."+tok.ID+".wrong"); err == nil {
		t.Fatal("AuthenticateToken(wrong secret) = nil error")
	}
	if lu := lastUsed(); lu != nil {
		t.Errorf("LastUsedAt after a refused attempt = %v; want nil", lu)
	}

	steps := []struct {
		advance time.Duration
		write   bool // whether this use is recorded
	}{
		{0, true},
		{30 * time.Second, false}, // within a minute of the last record
		{29 * time.Second, false}, // 59s
		{time.Second, true},       // 60s
		{time.Second, false},      // 61s
		{2 * time.Hour, true},
		{-time.Hour, true}, // the clock went back
		{time.Second, false},
	}
	var want time.Time
	for i, s := range steps {
		clk.advance(s.advance)
		if s.write {
			want = clk.t
		}
		if _, err := e.reg.AuthenticateToken(ctx, raw); err != nil {
			t.Fatalf("step %d: AuthenticateToken = %v", i, err)
		}
		lu := lastUsed()
		if lu == nil || !lu.Equal(want) {
			t.Errorf("step %d (clock start%+v): LastUsedAt = %v; want %v", i, clk.t.Sub(start), lu, want)
		}
	}
}
