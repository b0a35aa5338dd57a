package broker_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/daemontest"
)

func getMetrics(t *testing.T, s *daemontest.Server) string {
	t.Helper()
	resp, err := http.Get(s.API + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// containsLine reports whether some line of body starts with prefix and has
// a non-zero value.
func containsLine(body, prefix string) bool {
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix+" ") && !strings.HasSuffix(l, " 0") {
			return true
		}
	}
	return false
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
