package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestLoadOrCreateHasher(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "hash.key")
	h1, err := LoadOrCreateHasher(path)
	if err != nil {
		t.Fatalf("LoadOrCreateHasher(new) = %v; want nil", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("key file not created: %v", err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode of %s = %v; want %v", path, got, os.FileMode(0o600))
	}
	if fi.Size() != 32 {
		t.Errorf("size of %s = %d; want 32", path, fi.Size())
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("mode of the created directory = %v, %v; want %v", di.Mode().Perm(), err, os.FileMode(0o700))
	}
	key, _ := os.ReadFile(path)

	h2, err := LoadOrCreateHasher(path)
	if err != nil {
		t.Fatalf("LoadOrCreateHasher(existing) = %v; want nil", err)
	}
	if a, b := h1.Hash("s3cret"), h2.Hash("s3cret"); !bytes.Equal(a, b) {
		t.Errorf("Hash after reload = %x; want %x (the same key)", b, a)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, key) {
		t.Errorf("LoadOrCreateHasher(existing) rewrote the key")
	}
}

func TestLoadOrCreateHasherErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(short, make([]byte, 31), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.key")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"short key", short, short},
		{"empty key", empty, empty},
		{"a directory", dir, "read hash key"},
		{"parent is a file", filepath.Join(notDir, "hash.key"), "hash.key"},
	}
	for _, tt := range tests {
		h, err := LoadOrCreateHasher(tt.path)
		if err == nil || h != nil {
			t.Errorf("LoadOrCreateHasher(%s) = %v, %v; want an error", tt.name, h, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LoadOrCreateHasher(%s) = %q; want it to mention %q", tt.name, err, tt.want)
		}
	}
	if b, _ := os.ReadFile(short); len(b) != 31 {
		t.Errorf("LoadOrCreateHasher replaced a short key file; it must leave it alone")
	}
}

func TestNewHasher(t *testing.T) {
	t.Parallel()
	if _, err := NewHasher(make([]byte, 31)); err == nil {
		t.Errorf("NewHasher(31 bytes) = nil error; want an error")
	}
	key := bytes.Repeat([]byte{1}, 32)
	h, err := NewHasher(key)
	if err != nil {
		t.Fatalf("NewHasher(32 bytes) = %v", err)
	}
	before := h.Hash("x")
	key[0] = 2 // the hasher keeps its own copy
	if after := h.Hash("x"); !bytes.Equal(before, after) {
		t.Errorf("Hash changed after the caller modified the key slice")
	}
}

func TestHash(t *testing.T) {
	t.Parallel()
	h1, _ := NewHasher(bytes.Repeat([]byte{1}, 32))
	h1b, _ := NewHasher(bytes.Repeat([]byte{1}, 32))
	h2, _ := NewHasher(bytes.Repeat([]byte{2}, 32))
	a := h1.Hash("secret")
	if len(a) != 32 {
		t.Errorf("len(Hash(secret)) = %d; want 32", len(a))
	}
	tests := []struct {
		name  string
		x, y  []byte
		equal bool
	}{
		{"same hasher, same secret", a, h1.Hash("secret"), true},
		{"same key, other hasher", a, h1b.Hash("secret"), true},
		{"other key", a, h2.Hash("secret"), false},
		{"other secret", a, h1.Hash("secreT"), false},
		{"empty secret", h1.Hash(""), h2.Hash(""), false},
	}
	for _, tt := range tests {
		if got := bytes.Equal(tt.x, tt.y); got != tt.equal {
			t.Errorf("Hash equal (%s) = %v; want %v", tt.name, got, tt.equal)
		}
	}
	if bytes.Contains(a, []byte("secret")) {
		t.Errorf("Hash(secret) = %x; it contains the secret", a)
	}
}

func TestNewSecret(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		s := NewSecret()
		if len(s) != 43 {
			t.Fatalf("NewSecret() = %q (%d characters); want 43", s, len(s))
		}
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) != SecretBytes {
			t.Fatalf("NewSecret() = %q; want base64url of %d bytes (%v)", s, SecretBytes, err)
		}
		if seen[s] {
			t.Fatalf("NewSecret() = %q twice", s)
		}
		seen[s] = true
	}
}

func TestNewID(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		id := NewID("cred")
		rest, ok := strings.CutPrefix(id, "cred_")
		if !ok || len(rest) != 16 || strings.ContainsAny(rest, "./+=") {
			t.Fatalf("NewID(cred) = %q; want cred_ and 16 base64url characters", id)
		}
		if seen[id] {
			t.Fatalf("NewID(cred) = %q twice", id)
		}
		seen[id] = true
	}
}

// TestHashReusesMAC: Hash takes a keyed HMAC from a pool instead of
// building one (hmac.New and its key schedule) per secret check; the only
// allocation left is the returned sum. Concurrent use agrees with a fresh
// hmac.New for every secret.
func TestHashReusesMAC(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	h, _ := NewHasher(key)
	secret := NewSecret()
	h.Hash(secret) // fill the pool
	if n := testing.AllocsPerRun(100, func() { h.Hash(secret) }); n > 1 && !raceEnabled {
		t.Errorf("Hash allocates %v times per call; want at most 1 (the sum): the HMAC is not reused", n)
	}
	want := func(s string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(s))
		return m.Sum(nil)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				s := strings.Repeat("s", i) // lengths across a block boundary; 0 too
				if got := h.Hash(s); !bytes.Equal(got, want(s)) {
					t.Errorf("Hash(%d bytes) = %x; want %x", len(s), got, want(s))
					return
				}
			}
		}()
	}
	wg.Wait()
	big := strings.Repeat("b", 70_000)
	if got := h.Hash(big); !bytes.Equal(got, want(big)) {
		t.Errorf("Hash(70,000 bytes) = %x; want %x", got, want(big))
	}
}
