package ruleengine

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/seal"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
)

// sealEnv is a store, a key file and a webhook endpoint that outlive the
// engines started on them (a restart keeps the data dir).
type sealEnv struct {
	st      store.Store
	keyPath string
	hookURL string // with user information: http://hookuser:pw-s3cret@host/ok

	mu   sync.Mutex
	hits []string // "X-Api-Key|user:password" of every request
	logs strings.Builder
}

func newSealEnv(t *testing.T) *sealEnv {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "mote.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	v := &sealEnv{st: st, keyPath: filepath.Join(dir, "seal.key")}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		v.mu.Lock()
		v.hits = append(v.hits, r.Header.Get("X-Api-Key")+"|"+u+":"+p)
		v.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	v.hookURL = "http://hookuser:pw-s3cret@" + strings.TrimPrefix(srv.URL, "http://") + "/ok"
	return v
}

func (v *sealEnv) Write(p []byte) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.logs.Write(p)
}

func (v *sealEnv) got() ([]string, string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.hits...), v.logs.String()
}

// start starts an engine on the store with the key file (sealed: with a
// Sealer) and returns it with its bus, publisher and metrics.
func (v *sealEnv) start(t *testing.T, sealed bool) (*Engine, bus.Bus, *fakePublisher, *prometheus.Registry) {
	t.Helper()
	o := Options{Store: v.st.Rules(), Publisher: &fakePublisher{ch: make(chan published, 100)}, Metrics: prometheus.NewRegistry(),
		WebhookBackoff: time.Millisecond, WebhookRetries: -1, Workers: 1, Logger: slog.New(slog.NewTextHandler(v, nil))}
	if sealed {
		box, err := seal.LoadOrCreate(v.keyPath)
		if err != nil {
			t.Fatal(err)
		}
		o.Sealer = box
	}
	e := New(o)
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	b := &bus.Local{}
	e.Attach(b)
	return e, b, o.Publisher.(*fakePublisher), o.Metrics.(*prometheus.Registry)
}

func (v *sealEnv) rule() store.Rule {
	return store.Rule{Name: "hook", Enabled: true, SQL: "SELECT * FROM 'things/+/data'",
		Actions:     json.RawMessage(`[{"type":"webhook","url":"` + v.hookURL + `","headers":{"X-Api-Key":"Bearer tok-s3cret"}}]`),
		ErrorAction: json.RawMessage(`{"type":"republish","topic":"errors/${rule}"}`)}
}

// stored reads the rule's row through the store, under the engine.
func (v *sealEnv) stored(t *testing.T) string {
	t.Helper()
	r, err := v.st.Rules().Get(t.Context(), "hook")
	if err != nil {
		t.Fatal(err)
	}
	return string(r.Actions) + string(r.ErrorAction)
}

func publishData(b bus.Bus) {
	b.Publish(core.Message{Topic: "things/s1/data", Payload: []byte(`{}`), Thing: "s1", ClientID: "s1", Received: time.Now()})
}

const wantHit = "Bearer tok-s3cret|hookuser:pw-s3cret"

// waitHits waits for n requests to the endpoint, each with the plain
// secrets.
func (v *sealEnv) waitHits(t *testing.T, n int) {
	t.Helper()
	waitFor(t, func() error {
		hits, _ := v.got()
		if len(hits) != n {
			return fmt.Errorf("webhook requests %q; want %d", hits, n)
		}
		for _, h := range hits {
			if h != wantHit {
				return fmt.Errorf("webhook request %q; want %q", h, wantHit)
			}
		}
		return nil
	})
}

// checkSealed fails unless the stored row holds both secrets sealed.
func checkSealed(t *testing.T, row string) {
	t.Helper()
	if strings.Contains(row, "s3cret") || strings.Count(row, seal.Prefix) != 2 {
		t.Fatalf("stored actions %s; want both secrets sealed (%s…), neither in plain text", row, seal.Prefix)
	}
	if !strings.Contains(row, "hookuser") || !strings.Contains(row, "/ok") {
		t.Errorf("stored actions %s; want the URL readable but for its password", row)
	}
}

// TestWebhookSecretsSealedAtRest: header values and the URL password of a
// webhook are sealed in the store; the engine (and Get, for admins) sees
// them in plain text, the endpoint gets them, a restart on the same data
// dir still sends them, and a replaced key makes the webhook fail
// visibly, counted and logged without the secrets.
func TestWebhookSecretsSealedAtRest(t *testing.T) {
	v := newSealEnv(t)
	e, b, _, _ := v.start(t, true)
	out, err := e.Create(t.Context(), v.rule())
	if err != nil {
		t.Fatal(err)
	}
	row := v.stored(t)
	checkSealed(t, row)
	for name, r := range map[string]store.Rule{"Create": out, "Get": must(e.Get(t.Context(), "hook"))} {
		if !strings.Contains(string(r.Actions), "Bearer tok-s3cret") || !strings.Contains(string(r.Actions), "hookuser:pw-s3cret@") {
			t.Errorf("%s returned actions %s; want the secrets opened", name, r.Actions)
		}
	}
	publishData(b)
	v.waitHits(t, 1)

	// An update that keeps the secrets (placeholders) and a disable and
	// enable leave them sealed; the engine still sends them.
	r := Redact(out)
	r.Description = "edited"
	if _, err := e.Update(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	if _, err := e.SetEnabled(t.Context(), "hook", true); err != nil {
		t.Fatal(err)
	}
	checkSealed(t, v.stored(t))
	publishData(b)
	v.waitHits(t, 2)
	e.Close()

	// Restart: same store, same key file.
	e, b, _, _ = v.start(t, true)
	publishData(b)
	v.waitHits(t, 3)
	e.Close()

	// The key file replaced: the webhook fails, nothing is sent, the
	// failure is counted and goes to the error action without secrets.
	key := make([]byte, seal.KeySize)
	_, _ = rand.Read(key)
	if err := os.WriteFile(v.keyPath, key, 0o600); err != nil {
		t.Fatal(err)
	}
	e, b, pub, reg := v.start(t, true)
	defer e.Close()
	publishData(b)
	waitMetric(t, reg, 1, "mote_rule_errors_total", "hook")
	waitMetric(t, reg, 1, "mote_rule_action_total", "hook", "webhook", "failure")
	var p published
	select {
	case p = <-pub.ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no error action")
	}
	var doc errorDoc
	if err := json.Unmarshal([]byte(p.payload), &doc); err != nil {
		t.Fatal(err)
	}
	hits, logs := v.got()
	if !strings.Contains(doc.Error, "does not open") || strings.Contains(p.payload, "s3cret") || strings.Contains(p.payload, seal.Prefix) {
		t.Errorf("error document %s; want a seal error without the secrets", p.payload)
	}
	if !strings.Contains(logs, "does not open") || strings.Contains(logs, "s3cret") || strings.Contains(logs, seal.Prefix) {
		t.Errorf("logs:\n%s\nwant the seal failure logged without secrets", logs)
	}
	if len(hits) != 3 {
		t.Errorf("webhook requests %q with a wrong key; want none after the first 3", hits)
	}
	// The admin view shows the sealed form rather than failing.
	if got := must(e.Get(t.Context(), "hook")); !strings.Contains(string(got.Actions), seal.Prefix) {
		t.Errorf("Get with a wrong key = %s; want the sealed values", got.Actions)
	}
	if row2 := v.stored(t); row2 != row && strings.Contains(row2, "s3cret") {
		t.Errorf("a wrong key changed the stored secrets: %s", row2)
	}
}

// TestTamperedSealedSecretRefused: a sealed value altered in the store
// does not open: the webhook fails and is never sent with garbage.
func TestTamperedSealedSecretRefused(t *testing.T) {
	v := newSealEnv(t)
	e, _, _, _ := v.start(t, true)
	if _, err := e.Create(t.Context(), v.rule()); err != nil {
		t.Fatal(err)
	}
	e.Close()
	r, err := v.st.Rules().Get(t.Context(), "hook")
	if err != nil {
		t.Fatal(err)
	}
	// Flip one character of the sealed header value.
	s := string(r.Actions)
	i := strings.Index(s, `"X-Api-Key":"`+seal.Prefix) + len(`"X-Api-Key":"`+seal.Prefix) + 5
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	r.Actions = json.RawMessage(s[:i] + string(c) + s[i+1:])
	if _, err := v.st.Rules().Update(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	e, b, _, reg := v.start(t, true)
	defer e.Close()
	publishData(b)
	waitMetric(t, reg, 1, "mote_rule_action_total", "hook", "webhook", "failure")
	if hits, _ := v.got(); len(hits) != 0 {
		t.Errorf("webhook requests %q with a tampered secret; want none", hits)
	}
}

// TestPlainSecretsSealedAtStart: a rule stored before sealing existed
// (plain secrets) keeps working and is sealed when the engine starts.
func TestPlainSecretsSealedAtStart(t *testing.T) {
	v := newSealEnv(t)
	e, _, _, _ := v.start(t, false)
	if _, err := e.Create(t.Context(), v.rule()); err != nil {
		t.Fatal(err)
	}
	e.Close()
	if row := v.stored(t); !strings.Contains(row, "tok-s3cret") {
		t.Fatalf("without a Sealer the row is %s; want plain secrets", row)
	}
	e, b, _, _ := v.start(t, true)
	defer e.Close()
	checkSealed(t, v.stored(t))
	publishData(b)
	v.waitHits(t, 1)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
