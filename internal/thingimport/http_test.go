package thingimport_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
)

// post sends an import body to a real server and returns the status and
// the answer.
func post(t *testing.T, s *daemontest.Server, query, ct string, body io.Reader) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", s.API+"/api/v1/things:import"+query, body)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Content-Type", ct)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /things:import: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func thingCount(t *testing.T, s *daemontest.Server) int {
	t.Helper()
	n, _, err := s.Store().Things().Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestImportMalformedBodies: each malformed file through the real API —
// bad quoting, a wrong column count, a field longer than a line may be, a
// body over --import-max-size, a JSON line that is not JSON, in every mode
// — is refused with a 400 or 413 naming what is wrong, after good rows,
// and nothing of it is created; a byte order mark is no error.
func TestImportMalformedBodies(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) { c.ImportMaxSize = 1 << 20 })
	good := "name,attributes.site\nok-1,a\nok-2,b\n"
	for _, c := range []struct {
		name, ct, body string
		status         int
		want           string
	}{
		{"bad quoting", "text/csv", good + "bad-1,\"unterminated\nok-3,c\n", 400, "line 4: malformed CSV"},
		{"a quote inside a field", "text/csv", good + "bad-1,ab\"c\"\n", 400, "line 4: malformed CSV"},
		{"wrong column count", "text/csv", good + "bad-1,a,extra\n", 400, "line 4: malformed CSV: wrong number of fields"},
		{"too few columns", "text/csv", good + "bad-1\n", 400, "line 4: malformed CSV: wrong number of fields"},
		{"a huge field", "text/csv", good + "bad-1,\"" + strings.Repeat("x", 70<<10) + "\"\n", 400, "longer than 65536 bytes"},
		{"a huge header", "text/csv", "name," + strings.Repeat("attributes.x", 6<<10) + "\nok-1,a\n", 400, "line 1"},
		{"no name column", "text/csv", "attributes.site\na\n", 400, "no name column"},
		{"binary", "text/csv", "name\n\x00\xff\xfe\"\x01\n", 400, "line 2"},
		{"over --import-max-size", "text/csv", good + strings.Repeat("big-xxxxxxxxxxxxxxxxxxxxxxxx,z\n", 40<<10), 413, "--import-max-size"},
		{"JSON lines, not JSON", "application/x-ndjson", `{"name":"ok-1"}` + "\n" + `{"name":"bad-1",` + "\n", 400, "line 2: malformed JSON"},
	} {
		for _, mode := range []string{"", "?mode=bestEffort", "?dryRun=true"} {
			st, out := post(t, s, mode, c.ct, strings.NewReader(c.body))
			if st != c.status || !strings.Contains(out, c.want) {
				t.Errorf("%s%s: %d %.200s; want %d with %q", c.name, mode, st, out, c.status, c.want)
			}
		}
	}
	if n := thingCount(t, s); n != 0 {
		t.Fatalf("%d things after malformed imports; want none created", n)
	}
	// A byte order mark before the header is no error.
	if st, out := post(t, s, "", "text/csv", strings.NewReader("\ufeff"+good)); st != 200 || !strings.Contains(out, `"created":2`) {
		t.Errorf("CSV with a BOM: %d %.200s; want 2 created", st, out)
	}
	if n := thingCount(t, s); n != 2 {
		t.Errorf("%d things; want the 2 of the file with a BOM", n)
	}
}

// TestImportTrickledBody: a body that stops arriving is cut off at
// --http-body-timeout (plus its length at --upload-min-rate), and none of
// the rows that did arrive is created.
func TestImportTrickledBody(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) {
		c.HTTPBodyTimeout = 300 * time.Millisecond
		c.UploadMinRate = 1 << 30 // the length adds nothing
	})
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.API, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	head := "POST /api/v1/things:import?mode=bestEffort HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + s.Token +
		"\r\nContent-Type: text/csv\r\nContent-Length: 100000\r\n\r\n"
	if _, err := io.WriteString(conn, head+"name\ntrickle-1\ntrickle-2\n"); err != nil {
		t.Fatal(err)
	}
	// ...and nothing more. The server must give up, not wait forever.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("a body that never completes: %d %s; want an error", resp.StatusCode, b)
		}
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("a body that never completes: no answer and the connection still open after 10s")
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Errorf("cut off after %v; want about the body timeout (300ms)", el)
	}
	if n := thingCount(t, s); n != 0 {
		t.Errorf("%d things after a cut-off import; want none", n)
	}
}
