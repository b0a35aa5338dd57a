package fsblob_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/moteiot/mote/internal/blob"
	"github.com/moteiot/mote/internal/blob/blobtest"
	"github.com/moteiot/mote/internal/blob/fsblob"
)

func TestConformance(t *testing.T) {
	var dir string
	blobtest.Run(t, blobtest.Backend{
		Open: func(t *testing.T) blob.Store {
			dir = t.TempDir()
			s, err := fsblob.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Damage: func(t *testing.T, s blob.Store, key, mode string) {
			p := filepath.Join(dir, "objects", key+".blob")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			switch mode {
			case "flip":
				b[len(b)/2] ^= 0xff
			case "truncate":
				b = b[:len(b)-100]
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// TestOpenRemovesTemporaryFiles: what a Put killed mid-write left in tmp/
// is removed at the next Open and never listed.
func TestOpenRemovesTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := fsblob.Open(dir); err != nil {
		t.Fatal(err)
	}
	half := filepath.Join(dir, "tmp", "put-123")
	if err := os.WriteFile(half, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := fsblob.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(half); !os.IsNotExist(err) {
		t.Fatalf("temporary file still there after Open: %v", err)
	}
	if l, err := s.List(t.Context(), ""); err != nil || len(l) != 0 {
		t.Fatalf("List = %v, %v; want empty", l, err)
	}
}
