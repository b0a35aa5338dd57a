// Package keyfile keeps a random secret key in a file of the data
// directory, created on first use (as internal/seal does for seal.key).
package keyfile

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// LoadOrCreate reads the key of size bytes at path, creating it (mode
// 0600, its directory 0700) with random bytes the first time. A file of
// another size is an error.
func LoadOrCreate(path string, size int) ([]byte, error) {
	for range 2 {
		key, err := os.ReadFile(path)
		if err == nil {
			if len(key) != size {
				return nil, fmt.Errorf("key %s is %d bytes; want %d", path, len(key), size)
			}
			return key, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read key %s: %w", path, err)
		}
		key = make([]byte, size)
		rand.Read(key)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("key dir: %w", err)
		}
		// O_EXCL: two processes starting at once do not overwrite each
		// other's key; the loser reads the winner's.
		f, err := os.OpenFile(path+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create key %s: %w", path, err)
		}
		_, werr := f.Write(key)
		if serr := f.Sync(); werr == nil {
			werr = serr
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(path + ".tmp")
			return nil, fmt.Errorf("write key %s: %w", path, werr)
		}
		// Link fails if path exists: never replaces a key another process made.
		err = os.Link(path+".tmp", path)
		os.Remove(path + ".tmp")
		if err == nil {
			return key, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create key %s: %w", path, err)
		}
	}
	return nil, fmt.Errorf("key %s: could not be read or created", path)
}
