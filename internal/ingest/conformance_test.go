package ingest_test

import (
	"testing"

	"github.com/moteiot/mote/internal/ingest"
	"github.com/moteiot/mote/internal/ingest/ingesttest"
)

// TestConformance runs the journal suite on the write-ahead log.
func TestConformance(t *testing.T) {
	ingesttest.Run(t, func(t *testing.T) ingesttest.Opener {
		dir := t.TempDir()
		return func(applied func() uint64) (ingest.Durable, error) {
			return ingest.Open(ingest.Options{Dir: dir, NoSync: true, Applied: applied})
		}
	})
}
