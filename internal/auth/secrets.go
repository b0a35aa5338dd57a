// Package auth decides who a client is: devices by secret or X.509
// certificate, API callers by token. It holds the keyed hash that protects
// stored secrets and a small cache that keeps a reconnect storm off the
// store.
package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// SecretBytes is the entropy of generated device secrets and token secrets:
// 256 bits, so a fast keyed hash (HMAC-SHA256) is safe for them.
const SecretBytes = 32

// Hasher computes the keyed hash under which secrets are stored. The key
// lives in the data directory, outside the database: a stolen database
// alone does not allow checking guesses offline.
// A Hasher is safe for concurrent use.
type Hasher struct {
	key []byte
	// macs holds *keyedMAC: an HMAC with its key schedule done, Reset
	// between uses, so a connect does not pay for hmac.New.
	macs sync.Pool
}

// keyedMAC is a pooled HMAC and a scratch buffer for the secret's bytes.
type keyedMAC struct {
	h   hash.Hash
	buf []byte
}

// NewHasher returns a Hasher with the given key (at least 32 bytes).
func NewHasher(key []byte) (*Hasher, error) {
	if len(key) < 32 {
		return nil, errors.New("auth: hash key shorter than 32 bytes")
	}
	h := &Hasher{key: append([]byte(nil), key...)}
	h.macs.New = func() any { return &keyedMAC{h: hmac.New(sha256.New, h.key)} }
	return h, nil
}

// LoadOrCreateHasher reads the hash key from path, creating it (mode 0600)
// with fresh random bytes the first time.
func LoadOrCreateHasher(path string) (*Hasher, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, key, 0o600); err != nil {
			return nil, fmt.Errorf("auth: write hash key: %w", err)
		}
		return NewHasher(key)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: read hash key: %w", err)
	}
	h, err := NewHasher(key)
	if err != nil {
		return nil, fmt.Errorf("auth: %s: %w", path, err)
	}
	return h, nil
}

// Hash returns HMAC-SHA256(key, secret).
func (h *Hasher) Hash(secret string) []byte {
	m := h.macs.Get().(*keyedMAC)
	m.h.Reset()
	m.buf = append(m.buf[:0], secret...)
	m.h.Write(m.buf)
	sum := m.h.Sum(make([]byte, 0, sha256.Size))
	if cap(m.buf) > 1024 {
		m.buf = nil // a huge password field (up to 64 KB): do not keep it
	}
	h.macs.Put(m)
	return sum
}

// NewSecret returns a fresh random secret: 32 bytes, base64url without
// padding (43 characters).
func NewSecret() string {
	b := make([]byte, SecretBytes)
	if _, err := rand.Read(b); err != nil {
		panic("auth: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewID returns a short random identifier with a prefix, e.g. "cred_3k2...".
func NewID(prefix string) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic("auth: crypto/rand failed: " + err.Error())
	}
	return prefix + "_" + base64.RawURLEncoding.EncodeToString(b)
}
