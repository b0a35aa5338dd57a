// Package e2e tests the real mote binary the way a new user meets it: `mote
// serve` in a subprocess, the banner it prints, the mote CLI against the
// REST API, and real command-line MQTT clients (mosquitto_pub and
// mosquitto_sub from mosquitto-clients) against the broker.
package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const telemetry = `{"temp":21}`

// credential is the part of `mote cred create -o json` the test uses.
type credential struct {
	ID     string `json:"id"`
	Thing  string `json:"thing"`
	Type   string `json:"type"`
	Secret string `json:"secret"`
}

// thing is the part of a thing in `mote thing ... -o json` the test uses.
type thing struct {
	Name       string            `json:"name"`
	Attributes map[string]string `json:"attributes"`
	Policies   []string          `json:"policies"`
	Enabled    bool              `json:"enabled"`
	Connected  bool              `json:"connected"`
}

// user is what a new user has after following the banner: a server, an
// admin token and the secrets of the devices they created.
type user struct {
	dir     string // scratch directory
	data    string // the server's --data-dir
	srv     *server
	cli     cli
	secrets map[string]string // thing → secret
	secret  []string          // everything the server must never log
	caFile  string            // the CA certificate, downloaded from the API
}

func (u *user) newSecret(t *testing.T, thingName string) string {
	t.Helper()
	var c credential
	u.cli.okJSON(t, &c, "cred", "create", thingName, "--type", "secret")
	if c.Secret == "" || c.Thing != thingName || c.Type != "secret" || c.ID == "" {
		t.Fatalf("mote cred create %s --type secret -o json: want id, thing, type and secret, got %+v", thingName, c)
	}
	u.secrets[thingName] = c.Secret
	u.secret = append(u.secret, c.Secret)
	return c.Secret
}

func TestNewUser(t *testing.T) {
	dir := t.TempDir()
	u := &user{dir: dir, data: filepath.Join(dir, "data"), secrets: map[string]string{}}

	// First start: the banner has the addresses and the admin token.
	u.srv = startServer(t, u.data, true)
	u.cli = cli{server: u.srv.api, token: u.srv.token}
	u.secret = append(u.secret, u.srv.token)
	t.Logf("mote serve: MQTT %s, MQTTS %s, API %s", u.srv.mqtt, u.srv.mqtts, u.srv.api)

	// The devices of the acceptance scenario.
	r := u.cli.ok(t, "thing", "create", "sensor-1", "--attr", "site=ams")
	if !strings.Contains(r.stdout, "sensor-1") || !strings.Contains(r.stdout, "site=ams") {
		t.Errorf("mote thing create sensor-1 printed no details of the thing:\n%s", r.stdout)
	}
	u.newSecret(t, "sensor-1")
	u.cli.ok(t, "thing", "create", "dash")
	policyFile, err := filepath.Abs(filepath.Join("testdata", "observer-policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	u.cli.ok(t, "policy", "create", "observer", "--file", policyFile)
	r = u.cli.ok(t, "policy", "attach", "observer", "--thing", "dash")
	if want := `Attached policy "observer" to thing "dash".`; !strings.Contains(r.stdout, want) {
		t.Errorf("mote policy attach: stdout %q, want %q", r.stdout, want)
	}
	u.newSecret(t, "dash")
	u.cli.ok(t, "thing", "create", "plain")
	u.newSecret(t, "plain")

	t.Run("ThingList", func(t *testing.T) {
		var things []thing
		u.cli.okJSON(t, &things, "thing", "list")
		got := map[string]thing{}
		for _, th := range things {
			got[th.Name] = th
		}
		if len(things) != 3 || got["sensor-1"].Name == "" || got["dash"].Name == "" || got["plain"].Name == "" {
			t.Fatalf("mote thing list -o json: want sensor-1, dash and plain, got %+v", things)
		}
		if got["sensor-1"].Attributes["site"] != "ams" || !got["sensor-1"].Enabled {
			t.Errorf("sensor-1 = %+v, want enabled with site=ams", got["sensor-1"])
		}
		if !slices.Contains(got["dash"].Policies, "observer") {
			t.Errorf("dash policies = %q, want observer", got["dash"].Policies)
		}
	})

	t.Run("ExitCodes", func(t *testing.T) {
		r := u.cli.run(t, "thing", "get", "nosuch")
		if r.code != 3 || r.stdout != "" || !strings.Contains(r.stderr, `thing "nosuch" not found`) {
			t.Errorf("mote thing get nosuch: want exit 3, nothing on stdout and `thing \"nosuch\" not found` on stderr; got %v", r)
		}

		bad := cli{server: u.srv.api, token: "mote.tok_AAAAAAAAAAAAAAAA.not-a-real-secret-0123456789"}
		u.secret = append(u.secret, bad.token)
		r = bad.run(t, "thing", "list")
		if r.code != 5 || r.stdout != "" || !strings.HasPrefix(r.stderr, "mote: ") || strings.Contains(r.stderr, "Usage:") {
			t.Errorf("mote thing list with a bad token: want exit 5 and a one-line message on stderr; got %v", r)
		}

		r = u.cli.run(t, "thing", "create", "sensor-1")
		if r.code != 4 || r.stdout != "" || !strings.Contains(r.stderr, "already exists") {
			t.Errorf("mote thing create sensor-1 again: want exit 4 and `already exists` on stderr; got %v", r)
		}
	})

	t.Run("CACertificate", func(t *testing.T) {
		// The URL as the banner prints it, without a token.
		client := &http.Client{Timeout: 10 * time.Second}
		resp, err := client.Get(u.srv.caURL)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s without a token: %s\n%s", u.srv.caURL, resp.Status, body)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-pem-file") {
			t.Errorf("GET ca.pem: Content-Type %q, want application/x-pem-file", ct)
		}
		block, _ := pem.Decode(body)
		if block == nil || block.Type != "CERTIFICATE" {
			t.Fatalf("GET ca.pem: not a PEM certificate:\n%s", body)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil || !cert.IsCA {
			t.Fatalf("GET ca.pem: not a CA certificate (err %v)", err)
		}
		u.caFile = filepath.Join(u.dir, "ca.pem")
		if err := os.WriteFile(u.caFile, body, 0o644); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("MQTT", func(t *testing.T) {
		needMosquitto(t)
		// The acceptance scenario: dash (policy observer) sees sensor-1's
		// telemetry on things/#, plain (default policy only) is refused
		// the subscription.
		plain := startSub(t, u.srv, []string{"-u", "plain", "-P", u.secrets["plain"]}, "things/#", "-W", "3")
		dash := startSub(t, u.srv, []string{"-u", "dash", "-P", u.secrets["dash"]}, "things/#", "-C", "1", "-W", "10")
		deliver(t, dash, "things/sensor-1/telemetry", telemetry, func(t *testing.T) {
			r := mosquitto(t, "mosquitto_pub", "-h", "127.0.0.1", "-p", port(u.srv.mqtt),
				"-u", "sensor-1", "-P", u.secrets["sensor-1"], "-t", "things/sensor-1/telemetry", "-m", telemetry, "-q", "1")
			if r.code != 0 {
				t.Fatalf("mosquitto_pub as sensor-1: %v", r)
			}
		})
		if ack := suback(dash); ack != "0" {
			t.Errorf("dash's subscription to things/#: SUBACK %q, want 0 (granted QoS 0)", ack)
		}

		// mosquitto_sub reports a refused subscription on stderr (and, at
		// least in 2.0, still exits 0), so the assertions are on SUBACK and
		// stderr, and on plain receiving nothing.
		code := plain.wait(t, 10*time.Second)
		if ack := suback(plain); ack != "128" {
			t.Errorf("plain's subscription to things/#: SUBACK %q, want 128 (failure)\nstdout:\n%s", ack, plain.stdout)
		}
		if !strings.Contains(plain.stderr.String(), "All subscription requests were denied") {
			t.Errorf("mosquitto_sub as plain (exit %d): want `All subscription requests were denied` on stderr\nstdout:\n%s\nstderr:\n%s",
				code, plain.stdout, plain.stderr)
		}
		if received(plain.stdout.String(), "things/sensor-1/telemetry", telemetry) {
			t.Errorf("plain received sensor-1's telemetry although it may not subscribe to things/#:\n%s", plain.stdout)
		}
	})

	t.Run("WrongPassword", func(t *testing.T) {
		needMosquitto(t)
		wrong := "wrong-password-0123456789abcdef"
		u.secret = append(u.secret, wrong)
		r := mosquitto(t, "mosquitto_pub", "-h", "127.0.0.1", "-p", port(u.srv.mqtt),
			"-u", "sensor-1", "-P", wrong, "-t", "things/sensor-1/telemetry", "-m", telemetry, "-q", "1")
		if r.code == 0 || !strings.Contains(r.stderr, "Connection Refused") {
			t.Errorf("mosquitto_pub with a wrong password: want a non-zero exit and `Connection Refused` on stderr; got %v", r)
		}
	})

	t.Run("MQTTS", func(t *testing.T) {
		needMosquitto(t)
		needCA(t, u)
		// Host name verification is on: the server certificate names
		// localhost.
		expectDelivery(t, u, "things/sensor-1/telemetry", func(t *testing.T) {
			r := mosquitto(t, "mosquitto_pub", "--cafile", u.caFile, "-h", "localhost", "-p", port(u.srv.mqtts),
				"-u", "sensor-1", "-P", u.secrets["sensor-1"], "-t", "things/sensor-1/telemetry", "-m", telemetry, "-q", "1")
			if r.code != 0 {
				t.Fatalf("mosquitto_pub over MQTTS with --cafile ca.pem -h localhost: %v", r)
			}
		})
	})

	t.Run("X509", func(t *testing.T) {
		u.cli.ok(t, "thing", "create", "cam")
		certDir := filepath.Join(u.dir, "certs")
		r := u.cli.ok(t, "cred", "create", "cam", "--type", "x509", "--out-dir", certDir)
		crt, key, ca := filepath.Join(certDir, "cam.crt"), filepath.Join(certDir, "cam.key"), filepath.Join(certDir, "ca.crt")
		for _, f := range []string{crt, key, ca} {
			if !strings.Contains(r.stdout, f) {
				t.Errorf("mote cred create --out-dir does not say it wrote %s:\n%s", f, r.stdout)
			}
		}
		if st, err := os.Stat(key); err != nil {
			t.Fatal(err)
		} else if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", key, st.Mode().Perm())
		}
		keyPEM, err := os.ReadFile(key)
		if err != nil {
			t.Fatal(err)
		}
		if block, _ := pem.Decode(keyPEM); block == nil {
			t.Errorf("%s is not PEM", key)
		} else {
			u.secret = append(u.secret, keyBody(keyPEM))
		}
		if u.caFile != "" {
			want, _ := os.ReadFile(u.caFile)
			if got, _ := os.ReadFile(ca); strings.TrimSpace(string(got)) != strings.TrimSpace(string(want)) {
				t.Errorf("%s differs from GET /api/v1/ca.pem", ca)
			}
		}

		needMosquitto(t)
		needCA(t, u)
		// The message reaching dash shows the broker took the thing name
		// from the certificate (the default policy lets cam publish on
		// things/cam/#).
		expectDelivery(t, u, "things/cam/x", func(t *testing.T) {
			r := mosquitto(t, "mosquitto_pub", "--cafile", u.caFile, "--cert", crt, "--key", key,
				"-h", "localhost", "-p", port(u.srv.mqtts), "-t", "things/cam/x", "-m", "hi", "-q", "1")
			if r.code != 0 {
				t.Fatalf("mosquitto_pub with cam's certificate: %v", r)
			}
		}, "hi")
	})

	t.Run("AdminToken", func(t *testing.T) {
		// Offline, on the data directory, while the server runs.
		r := run(t, baseEnv(), moteBin, "admin", "token", "--data-dir", u.data)
		if r.code != 0 {
			t.Fatalf("mote admin token: %v", r)
		}
		lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
		if len(lines) != 1 || !regexp.MustCompile(`^mote\.tok_\S+$`).MatchString(lines[0]) {
			t.Fatalf("mote admin token: want exactly one line with a token, got %q", r.stdout)
		}
		u.secret = append(u.secret, lines[0])
		var things []thing
		cli{server: u.srv.api, token: lines[0]}.okJSON(t, &things, "thing", "list")
		if len(things) < 3 {
			t.Errorf("the token of mote admin token lists %d things, want at least 3", len(things))
		}
	})

	// Graceful shutdown with a device still connected: dash subscribes
	// (no message limit) and shows as connected before the SIGTERM.
	if haveMosquitto() {
		startSub(t, u.srv, []string{"-u", "dash", "-P", u.secrets["dash"]}, "things/#", "-W", "60")
		if !waitConnected(t, u.cli, "dash", true) {
			t.Errorf("dash, subscribed with mosquitto_sub, never shows as connected in mote thing get")
		}
	}
	u.srv.stop(t, u.secret)
	checkStdout(t, u.srv, u)

	// Restart on the same data directory: everything is still there, no new
	// admin token, the devices' credentials still work.
	t.Run("Restart", func(t *testing.T) {
		u.srv = startServer(t, u.data, false)
		u.cli.server = u.srv.api // new ports; the first admin token still works
		var things []thing
		u.cli.okJSON(t, &things, "thing", "list")
		var names []string
		for _, th := range things {
			names = append(names, th.Name)
		}
		for _, want := range []string{"sensor-1", "dash", "plain"} {
			if !slices.Contains(names, want) {
				t.Errorf("after restart, mote thing list has %q, want %s among them", names, want)
			}
		}
		var s1 thing
		u.cli.okJSON(t, &s1, "thing", "get", "sensor-1")
		if s1.Attributes["site"] != "ams" {
			t.Errorf("after restart, sensor-1 = %+v, want site=ams", s1)
		}
		var dash thing
		u.cli.okJSON(t, &dash, "thing", "get", "dash")
		if dash.Connected || !slices.Contains(dash.Policies, "observer") {
			t.Errorf("after restart, dash = %+v, want not connected, with policy observer", dash)
		}

		if haveMosquitto() {
			expectDelivery(t, u, "things/sensor-1/telemetry", func(t *testing.T) {
				r := mosquitto(t, "mosquitto_pub", "-h", "127.0.0.1", "-p", port(u.srv.mqtt),
					"-u", "sensor-1", "-P", u.secrets["sensor-1"], "-t", "things/sensor-1/telemetry", "-m", telemetry, "-q", "1")
				if r.code != 0 {
					t.Fatalf("after restart, mosquitto_pub with sensor-1's secret: %v", r)
				}
			})
			if u.caFile != "" { // the CA and server certificate were kept
				r := mosquitto(t, "mosquitto_pub", "--cafile", u.caFile, "-h", "localhost", "-p", port(u.srv.mqtts),
					"-u", "sensor-1", "-P", u.secrets["sensor-1"], "-t", "things/sensor-1/telemetry", "-m", telemetry, "-q", "1")
				if r.code != 0 {
					t.Errorf("after restart, MQTTS with the CA downloaded before: %v", r)
				}
			}
		} else {
			t.Log("mosquitto-clients not installed: not checking sensor-1's secret over MQTT after the restart")
		}

		u.srv.stop(t, u.secret)
		out := u.srv.stdout.String()
		if strings.Contains(out, "mote.tok_") || strings.Contains(out, "First start") {
			t.Errorf("the second start printed an admin token again:\n%s", out)
		}
		checkStdout(t, u.srv, u)
	})
}

// waitConnected polls `mote thing get` for up to 5 s until the thing's
// connected field is want.
func waitConnected(t *testing.T, c cli, name string, want bool) bool {
	t.Helper()
	return poll(5*time.Second, 100*time.Millisecond, func() bool {
		var th thing
		c.okJSON(t, &th, "thing", "get", name)
		return th.Connected == want
	})
}

// checkStdout checks that the server printed no device secret on stdout.
func checkStdout(t *testing.T, s *server, u *user) {
	t.Helper()
	out := s.stdout.String()
	for _, sec := range u.secrets {
		if strings.Contains(out, sec) {
			t.Errorf("mote serve printed a device secret on stdout")
		}
	}
}

// keyBody is the first base64 line of a PEM private key: enough to spot the
// key in a log.
func keyBody(p []byte) string {
	for _, l := range strings.Split(string(p), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			return l
		}
	}
	return ""
}

// ---- mosquitto-clients ----

func haveMosquitto() bool {
	for _, n := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(n); err != nil {
			return false
		}
	}
	return true
}

func needMosquitto(t *testing.T) {
	t.Helper()
	if !haveMosquitto() {
		t.Skip("mosquitto-clients not installed: apt-get install mosquitto-clients")
	}
}

func needCA(t *testing.T, u *user) {
	t.Helper()
	if u.caFile == "" {
		t.Fatal("no CA certificate: the CACertificate subtest failed")
	}
}

func mosquitto(t *testing.T, name string, args ...string) result {
	t.Helper()
	return run(t, baseEnv(), name, args...)
}

var reSubscribed = regexp.MustCompile(`Subscribed \(mid: \d+\): (\d+)`)

// startSub starts mosquitto_sub on the plain MQTT port with -d (debug output
// on stdout, which shows the SUBACK) and -v (topic before payload).
//
// mosquitto_sub's stdout is block-buffered on a pipe, so nothing of it can
// be seen before it exits: the test cannot wait for the SUBACK and instead
// publishes until the subscriber has its message (see deliver) and reads
// the SUBACK from the output afterwards (see suback).
func startSub(t *testing.T, s *server, auth []string, filter string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"-h", "127.0.0.1", "-p", port(s.mqtt)}, auth...)
	args = append(args, "-t", filter, "-d", "-v")
	args = append(args, extra...)
	return startProc(t, cmdTimeout, baseEnv(), "mosquitto_sub", args...)
}

// suback is the SUBACK return code mosquitto_sub -d printed: the granted
// QoS, or 128 for a refused subscription ("" if there was none).
func suback(p *proc) string {
	if m := reSubscribed.FindStringSubmatch(p.stdout.String()); m != nil {
		return m[1]
	}
	return ""
}

// deliver runs publish every 250 ms until sub (a mosquitto_sub -C 1)
// exits, at most 10 s, then requires that it exited 0 with payload on
// topic.
func deliver(t *testing.T, sub *proc, topic, payload string, publish func(*testing.T)) {
	t.Helper()
	deadline := time.After(10 * time.Second)
publishing:
	for {
		publish(t)
		select {
		case <-sub.exited:
			break publishing
		case <-time.After(250 * time.Millisecond):
		case <-deadline:
			break publishing
		}
	}
	code := sub.wait(t, 15*time.Second)
	if code != 0 || !received(sub.stdout.String(), topic, payload) {
		t.Fatalf("mosquitto_sub: want exit 0 and %q on %s; exit %d\nstdout:\n%s\nstderr:\n%s",
			payload, topic, code, sub.stdout, sub.stderr)
	}
}

// expectDelivery subscribes dash to topic (one message, at most 10 s) and
// requires that it receives payload (telemetry by default) from publish.
func expectDelivery(t *testing.T, u *user, topic string, publish func(*testing.T), payload ...string) {
	t.Helper()
	want := telemetry
	if len(payload) > 0 {
		want = payload[0]
	}
	sub := startSub(t, u.srv, []string{"-u", "dash", "-P", u.secrets["dash"]}, topic, "-C", "1", "-W", "10")
	deliver(t, sub, topic, want, publish)
	if ack := suback(sub); ack != "0" {
		t.Errorf("dash's subscription to %s: SUBACK %q, want 0", topic, ack)
	}
}

// received reports whether mosquitto_sub -v printed the message.
func received(stdout, topic, payload string) bool {
	return slices.Contains(strings.Split(stdout, "\n"), topic+" "+payload)
}
