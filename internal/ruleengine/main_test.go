package ruleengine

import (
	"os"
	"testing"

	"github.com/moteiot/mote/internal/pgtest"
)

// TestMain starts a throw-away PostgreSQL for the postgres action's tests
// (they skip without the binaries).
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
