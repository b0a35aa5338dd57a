package azure_test

import (
	"os"
	"testing"

	"github.com/moteiot/mote/internal/pgtest"
)

// TestMain starts a throw-away PostgreSQL for TestMixedFleet (which skips
// without the binaries).
func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m))
}
