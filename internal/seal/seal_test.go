package seal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	b, err := LoadOrCreate(filepath.Join(t.TempDir(), "d", "seal.key"))
	if err != nil {
		t.Fatalf("LoadOrCreate = %v; want nil", err)
	}
	const secret = "Bearer s3cr3t"
	s1, s2 := b.Seal(secret), b.Seal(secret)
	if !IsSealed(s1) || strings.Contains(s1, "s3cr3t") {
		t.Fatalf("Seal(%q) = %q; want a sealed value without the secret", secret, s1)
	}
	if s1 == s2 {
		t.Errorf("Seal twice gave the same value %q; want a fresh nonce each time", s1)
	}
	if b.Seal(s1) != s1 {
		t.Errorf("Seal(sealed) sealed again; want it as is")
	}
	if got, err := b.Open(s1); err != nil || got != secret {
		t.Errorf("Open(Seal(%q)) = %q, %v; want the secret", secret, got, err)
	}
	if got, err := b.Open("plain"); err != nil || got != "plain" {
		t.Errorf("Open(plain) = %q, %v; want it as is", got, err)
	}
	// Tampered: one byte of the ciphertext changed, truncated, not base64.
	raw := []byte(s1)
	i := len(raw) - 5
	if raw[i] == 'A' {
		raw[i] = 'B'
	} else {
		raw[i] = 'A'
	}
	for _, bad := range []string{string(raw), s1[:len(Prefix)+10], Prefix + "!!!"} {
		if got, err := b.Open(bad); !errors.Is(err, ErrOpen) || got != "" {
			t.Errorf("Open(tampered %q) = %q, %v; want ErrOpen", bad, got, err)
		}
	}
	// Another key does not open it.
	other, _ := New(bytes.Repeat([]byte{7}, KeySize))
	if _, err := other.Open(s1); !errors.Is(err, ErrOpen) {
		t.Errorf("Open with another key = %v; want ErrOpen", err)
	}
}

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seal.key")
	b1, err := LoadOrCreate(path)
	if err != nil {
		t.Fatalf("LoadOrCreate(new) = %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != KeySize {
		t.Errorf("key file mode %v size %d; want 0600 and %d bytes", fi.Mode().Perm(), fi.Size(), KeySize)
	}
	s := b1.Seal("x")
	b2, err := LoadOrCreate(path)
	if err != nil {
		t.Fatalf("LoadOrCreate(existing) = %v", err)
	}
	if got, err := b2.Open(s); err != nil || got != "x" {
		t.Errorf("a reloaded key opens %q, %v; want x", got, err)
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(path); err == nil {
		t.Errorf("LoadOrCreate(5-byte key) = nil; want an error")
	}
}
