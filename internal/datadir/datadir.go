// Package datadir names the files in Mote's data directory, so the server
// and offline commands (mote admin token) agree on the layout.
package datadir

import (
	"fmt"
	"os"
	"path/filepath"
)

// Default is the data directory used when none is configured.
const Default = "./mote-data"

// DB is the embedded SQLite database.
func DB(dir string) string { return filepath.Join(dir, "mote.db") }

// Telemetry is the embedded time-series database.
func Telemetry(dir string) string { return filepath.Join(dir, "telemetry.db") }

// Journal is the directory of the ingest journal: the write-ahead log of
// acknowledged messages not yet stored (internal/ingest).
func Journal(dir string) string { return filepath.Join(dir, "journal") }

// HashKey is the key of the keyed hash that protects stored secrets.
func HashKey(dir string) string { return filepath.Join(dir, "secret.key") }

// PKI is the directory of the built-in CA and the server certificate.
func PKI(dir string) string { return filepath.Join(dir, "pki") }

// Ensure creates dir (mode 0700) if it does not exist.
func Ensure(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	return nil
}

// SealKey is the key that encrypts secrets stored in the database (rule
// webhook headers and URL passwords; internal/seal).
func SealKey(dir string) string { return filepath.Join(dir, "seal.key") }

// Blobs is the directory of the blob store: firmware artifacts and files
// uploaded by devices (internal/blob/fsblob).
func Blobs(dir string) string { return filepath.Join(dir, "blobs") }

// FilesKey is the key that encrypts device files at rest (internal/files).
func FilesKey(dir string) string { return filepath.Join(dir, "files.key") }

// ArtifactURLKey is the key that signs artifact download URLs
// (internal/artifacts).
func ArtifactURLKey(dir string) string { return filepath.Join(dir, "artifact-url.key") }
