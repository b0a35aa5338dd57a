package httpapi_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
)

func consoleClient(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

func consoleDo(t *testing.T, c *http.Client, method, url, body string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func consoleDecode(t *testing.T, res *http.Response) map[string]any {
	t.Helper()
	defer res.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		t.Fatalf("%s: decode: %v", res.Request.URL, err)
	}
	return m
}

func TestConsoleSession(t *testing.T) {
	s := daemontest.Start(t)
	c := consoleClient(t)
	api := s.API + "/api/v1"

	// Not signed in: /auth/me says so without an error.
	if m := consoleDecode(t, consoleDo(t, c, "GET", api+"/auth/me", "")); m["via"] != "none" {
		t.Fatalf("me before login = %v", m)
	}
	res := consoleDo(t, c, "POST", api+"/auth/login", `{"user":"admin","password":"wrong-password"}`)
	if p := consoleDecode(t, res); res.StatusCode != 401 || p["detail"] != "wrong user name or password" {
		t.Fatalf("bad login: %d %v", res.StatusCode, p)
	}
	res = consoleDo(t, c, "POST", api+"/auth/login", `{"user":"admin","password":"`+s.InitialPassword()+`"}`)
	if res.StatusCode != 200 {
		t.Fatalf("login: %d %v", res.StatusCode, consoleDecode(t, res))
	}
	sc := res.Header.Get("Set-Cookie")
	for _, want := range []string{"mote_session=", "HttpOnly", "SameSite=Strict", "Max-Age=43200"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %q", sc, want)
		}
	}
	res.Body.Close()
	if m := consoleDecode(t, consoleDo(t, c, "GET", api+"/auth/me", "")); m["user"] != "admin" || m["role"] != "admin" || m["via"] != "session" {
		t.Fatalf("me = %v", m)
	}
	// The cookie reads the API ...
	if res := consoleDo(t, c, "GET", api+"/things", ""); res.StatusCode != 200 {
		t.Fatalf("GET /things with the session: %d", res.StatusCode)
	}
	// ... but changes need the console header and this origin.
	res = consoleDo(t, c, "POST", api+"/things", `{"name":"a"}`)
	if p := consoleDecode(t, res); res.StatusCode != 403 || !strings.Contains(p["detail"].(string), "X-Mote-Console") {
		t.Fatalf("POST without the header: %d %v", res.StatusCode, p)
	}
	res = consoleDo(t, c, "POST", api+"/things", `{"name":"a"}`, "X-Mote-Console", "1", "Origin", "http://evil.example")
	if res.StatusCode != 403 {
		t.Fatalf("POST from another origin: %d", res.StatusCode)
	}
	res.Body.Close()
	res = consoleDo(t, c, "POST", api+"/things", `{"name":"a"}`, "X-Mote-Console", "1", "Origin", s.API)
	if res.StatusCode != 201 {
		t.Fatalf("POST from the console: %d %v", res.StatusCode, consoleDecode(t, res))
	}
	res.Body.Close()

	// Sign out: the session ends on the server, not only in the browser.
	var cookie *http.Cookie
	for _, ck := range c.Jar.Cookies(res.Request.URL) {
		if ck.Name == "mote_session" {
			cookie = ck
		}
	}
	if res := consoleDo(t, c, "POST", api+"/auth/logout", "", "X-Mote-Console", "1"); res.StatusCode != 204 {
		t.Fatalf("logout: %d", res.StatusCode)
	}
	old := &http.Client{Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", api+"/things", nil)
	req.AddCookie(cookie)
	res, err := old.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 401 {
		t.Fatalf("the old cookie after logout: %d", res.StatusCode)
	}
	res.Body.Close()
}

func TestConsoleLoginRateLimit(t *testing.T) {
	s := daemontest.Start(t)
	c := consoleClient(t)
	var last int
	for range 6 {
		res := consoleDo(t, c, "POST", s.API+"/api/v1/auth/login", `{"user":"admin","password":"guess-guess"}`)
		last = res.StatusCode
		res.Body.Close()
	}
	if last != 429 {
		t.Fatalf("6th failed login: %d; want 429", last)
	}
}

// readEvents returns a function that reads the next event of a stream.
func readEvents(t *testing.T, res *http.Response) func() (string, map[string]any) {
	sc := bufio.NewScanner(res.Body)
	return func() (string, map[string]any) {
		t.Helper()
		var name string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				var m map[string]any
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &m); err != nil {
					t.Fatalf("event data %q: %v", line, err)
				}
				return name, m
			}
		}
		t.Fatalf("event stream ended: %v", sc.Err())
		return "", nil
	}
}

func TestEventStream(t *testing.T) {
	s := daemontest.Start(t)
	secret := s.Device(t, "dev-1")
	req, _ := http.NewRequest("GET", s.API+"/api/v1/events?stats=1&presence=1&thing=dev-1", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	next := readEvents(t, res)
	if name, m := next(); name != "stats" || m["connections"] == nil {
		t.Fatalf("first event %s %v; want stats", name, m)
	}
	dev := s.V5(t, "dev-1", secret)
	dev.Pub(t, "things/dev-1/telemetry", 1, false, `{"temp":21.5}`)
	var sawPresence, sawMessage bool
	for !sawPresence || !sawMessage {
		name, m := next()
		switch name {
		case "presence":
			p, _ := m["payload"].(map[string]any)
			sawPresence = p["thing"] == "dev-1" && p["event"] == "connected"
		case "message":
			p, _ := m["payload"].(map[string]any)
			if m["topic"] != "things/dev-1/telemetry" || p["temp"] != 21.5 {
				t.Fatalf("message event %v", m)
			}
			sawMessage = true
		}
	}

	// Bad queries are refused before the stream starts.
	for _, q := range []string{"", "stats=2", "thing=nope", "bogus=1"} {
		req, _ := http.NewRequest("GET", s.API+"/api/v1/events?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+s.Token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 400 && res.StatusCode != 404 {
			t.Errorf("events?%s: %d", q, res.StatusCode)
		}
	}
}
