package ruleengine

import (
	"flag"
	"os"
	"testing"

	"github.com/moteiot/mote/internal/pgtest"
)

// TestMain starts a throw-away PostgreSQL for the postgres action's tests
// (they skip without the binaries), but not for a fuzzing run, whose
// workers each run this binary and need no database.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run())
	}
	os.Exit(pgtest.Main(m))
}
