// Package seal encrypts small secrets at rest (the header values and URL
// passwords of rule webhooks) with AES-256-GCM under a key kept in the
// data directory (datadir.SealKey). A sealed value is a string:
//
//	mote:sealed:v1:<base64url(nonce ‖ ciphertext ‖ tag)>
//
// with a fresh random 12-byte nonce per value, so sealed and plain values
// (stored before sealing existed) can be told apart, and the version
// leaves room for another scheme.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Prefix starts every sealed value.
const Prefix = "mote:sealed:v1:"

// KeySize is the size of a key: AES-256.
const KeySize = 32

// ErrOpen is returned for a sealed value that does not open: a wrong key
// (the key file was replaced) or a value that was altered.
var ErrOpen = errors.New("seal: sealed value does not open (wrong seal.key, or the value was altered)")

// Box seals and opens values with one key. It is safe for concurrent use.
type Box struct {
	aead cipher.AEAD
}

// New returns a Box with a key of KeySize bytes.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal: key is %d bytes; want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: gcm: %w", err)
	}
	return &Box{aead: aead}, nil
}

// LoadOrCreate reads the key from path, creating it (mode 0600, its
// directory 0700) with fresh random bytes the first time.
func LoadOrCreate(path string) (*Box, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, KeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("seal: new key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("seal: key dir: %w", err)
		}
		// O_EXCL: two processes starting at once do not overwrite each
		// other's key.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("seal: create key %s: %w", path, err)
		}
		if _, err := f.Write(key); err != nil {
			f.Close()
			return nil, fmt.Errorf("seal: write key %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("seal: write key %s: %w", path, err)
		}
		return New(key)
	}
	if err != nil {
		return nil, fmt.Errorf("seal: read key: %w", err)
	}
	b, err := New(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %s: %w", path, err)
	}
	return b, nil
}

// IsSealed reports whether s is a sealed value.
func IsSealed(s string) bool { return strings.HasPrefix(s, Prefix) }

// Seal returns plain sealed. A value that is already sealed is returned
// as is.
func (b *Box) Seal(plain string) string {
	if IsSealed(plain) {
		return plain
	}
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plain)+b.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("seal: crypto/rand failed: " + err.Error())
	}
	out := b.aead.Seal(nonce, nonce, []byte(plain), nil)
	return Prefix + base64.RawURLEncoding.EncodeToString(out)
}

// Open returns the plain value of a sealed one; a value that is not
// sealed (stored before sealing) is returned as is. A sealed value that
// does not open is ErrOpen; the error never holds the value.
func (b *Box) Open(s string) (string, error) {
	if !IsSealed(s) {
		return s, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s[len(Prefix):])
	n := b.aead.NonceSize()
	if err != nil || len(raw) < n+b.aead.Overhead() {
		return "", ErrOpen
	}
	plain, err := b.aead.Open(nil, raw[:n], raw[n:], nil)
	if err != nil {
		return "", ErrOpen
	}
	return string(plain), nil
}
