package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/daemontest"
)

// The banner's hints run the binary the way it was started (./mote), and
// name the data directory.
func TestBannerUsesProgramPath(t *testing.T) {
	for _, tc := range []struct{ arg0, want string }{
		{"./mote", "./mote"},
		{"/usr/local/bin/mote", "/usr/local/bin/mote"},
		{"mote", "mote"},
		{"", "mote"},
	} {
		if got := progName(tc.arg0); got != tc.want {
			t.Errorf("progName(%q) = %q; want %q", tc.arg0, got, tc.want)
		}
	}
	srv := daemontest.Start(t)
	var buf bytes.Buffer
	printBanner(&buf, srv.Daemon, progName("./mote"))
	out := buf.String()
	for _, want := range []string{
		"./mote thing create my-device && ./mote cred create my-device",
		"./mote admin token --data-dir " + srv.Dir,
		"./mote admin password --data-dir " + srv.Dir,
		srv.InitialToken(),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("banner does not contain %q:\n%s", want, out)
		}
	}
}
