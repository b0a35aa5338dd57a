package shadow_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/shadow"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
)

// recorder is a Publisher that keeps what was published.
type recorder struct {
	mu   sync.Mutex
	msgs []published
}

type published struct {
	topic string
	body  string
}

func (r *recorder) Publish(topic string, payload []byte, _ bool, qos byte) error {
	if qos != 1 {
		panic("shadow responses must be QoS 1")
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, published{topic, string(payload)})
	r.mu.Unlock()
	return nil
}

func (r *recorder) count(suffix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if strings.HasSuffix(m.topic, suffix) {
			n++
		}
	}
	return n
}

func (r *recorder) all() []published {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]published(nil), r.msgs...)
}

func openStore(t *testing.T, things ...string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "mote.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, n := range things {
		if _, err := st.Things().Create(context.Background(), store.Thing{Name: n, Enabled: true}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func msg(thing, topic, payload string) core.Message {
	return core.Message{Topic: topic, Payload: []byte(payload), Thing: thing, QoS: 1, Protocol: "mqtt"}
}

// TestQueueFull: a full queue answers 429 on .../rejected, with the
// clientToken, and every request gets exactly one answer.
func TestQueueFull(t *testing.T) {
	st := openStore(t, "d")
	rec := &recorder{}
	s := shadow.New(shadow.Options{Store: st.Shadows(), Publisher: rec, Workers: 1, QueueSize: 1})
	const n = 300
	for i := range n {
		s.HandleMessage(msg("d", "$aws/things/d/shadow/update", `{"state":{"reported":{"i":`+itoa(i)+`}},"clientToken":"t`+itoa(i)+`"}`))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	acc, rej := rec.count("/update/accepted"), rec.count("/update/rejected")
	if acc+rej != n || rej == 0 || s.Dropped() != 0 {
		t.Fatalf("%d accepted + %d rejected of %d (dropped %d); want all answered and some 429s", acc, rej, n, s.Dropped())
	}
	for _, m := range rec.all() {
		if strings.HasSuffix(m.topic, "/rejected") {
			var e struct {
				Code        int    `json:"code"`
				Message     string `json:"message"`
				ClientToken string `json:"clientToken"`
			}
			if err := json.Unmarshal([]byte(m.body), &e); err != nil || e.Code != 429 || e.Message != "Too many requests" || e.ClientToken == "" {
				t.Errorf("rejection %s", m.body)
			}
		}
	}
	// The accepted ones are durable, in order: the version is their count.
	sh, err := st.Shadows().Get(context.Background(), "d", "")
	if err != nil || sh.Version != int64(acc) {
		t.Errorf("stored version %d (%v); want %d", sh.Version, err, acc)
	}
}

// TestNotRequests: response topics, other things' topics and malformed
// topics are not requests.
func TestNotRequests(t *testing.T) {
	st := openStore(t, "d", "e")
	rec := &recorder{}
	s := shadow.New(shadow.Options{Store: st.Shadows(), Publisher: rec})
	for _, m := range []core.Message{
		msg("d", "$aws/things/d/shadow/update/accepted", `{"state":{}}`),
		msg("d", "$mote/things/d/shadow/update/delta", `{"state":{}}`),
		msg("d", "$aws/things/d/shadow/name/x/update/documents", `{}`),
		msg("d", "$aws/things/d/shadow", `{}`),
		msg("d", "$aws/things/d/shadow/name/get", `{}`),
		msg("d", "$aws/things/d/shadow/name//get", `{}`),
		msg("d", "$aws/things//shadow/get", `{}`),
		msg("d", "things/d/shadow/update", `{"state":{}}`),
		msg("d", "$aws/things/e/shadow/update", `{"state":{"reported":{"x":1}}}`), // another thing's
		msg("", "$aws/things/e/shadow/update", `{"state":{"reported":{"x":1}}}`),
	} {
		s.HandleMessage(m)
	}
	s.Close()
	if msgs := rec.all(); len(msgs) != 0 {
		t.Errorf("answered non-requests: %v", msgs)
	}
	if _, err := st.Shadows().Get(context.Background(), "e", ""); !core.IsNotFound(err) {
		t.Errorf("e's shadow was written: %v", err)
	}
	if s.Dropped() != 2 {
		t.Errorf("Dropped %d; want 2 (the requests naming another thing)", s.Dropped())
	}
}

// TestInvalidNames: bad shadow names are rejected with 400.
func TestInvalidNames(t *testing.T) {
	st := openStore(t, "d")
	rec := &recorder{}
	s := shadow.New(shadow.Options{Store: st.Shadows(), Publisher: rec})
	s.HandleMessage(msg("d", "$mote/things/d/shadow/name/classic/update", `{"state":{}}`))
	s.HandleMessage(msg("d", "$mote/things/d/shadow/name/"+strings.Repeat("x", 65)+"/get", ``))
	s.HandleMessage(msg("d", "$mote/things/d/shadow/name/a.b/delete", ``))
	s.Close()
	if n := rec.count("/rejected"); n != 3 {
		t.Errorf("%d rejections; want 3: %v", n, rec.all())
	}
	for _, m := range rec.all() {
		if !strings.Contains(m.body, `"code":400`) {
			t.Errorf("%s: %s", m.topic, m.body)
		}
	}
	if _, err := s.Get(context.Background(), "d", "classic"); err == nil {
		t.Error("API Get of the reserved name: no error")
	}
}

// TestStoreFailure: when the store fails, requests are answered 500 and
// nothing hangs; after Close, calls are refused with 503.
func TestStoreFailure(t *testing.T) {
	st := openStore(t, "d")
	s := shadow.New(shadow.Options{Store: st.Shadows(), Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	if _, err := s.Update(ctx, "d", "", []byte(`{"state":{"desired":{"a":1}}}`)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := s.Update(ctx, "d", "", []byte(`{"state":{"desired":{"a":2}}}`))
	var se *shadow.Error
	if !asShadowError(err, &se) || se.Code != 500 {
		t.Fatalf("update with a closed store: %v; want 500", err)
	}
	// The failed update is not visible: the cached state was dropped and
	// the next read fails too instead of serving unstored state.
	if body, err := s.Get(ctx, "d", ""); err == nil {
		t.Errorf("get after a failed commit served %s", body)
	}
	s.Close()
	if _, err := s.Get(ctx, "d", ""); !asShadowError(err, &se) || se.Code != 503 {
		t.Errorf("after Close: %v; want 503", err)
	}
}

func asShadowError(err error, se **shadow.Error) bool {
	e, ok := err.(*shadow.Error)
	if ok {
		*se = e
	}
	return ok
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// TestCacheEviction: with a small cache, shadows are evicted and read
// back from the store unchanged, versions and tombstones included.
func TestCacheEviction(t *testing.T) {
	var things []string
	for i := range 40 {
		things = append(things, "t"+itoa(i))
	}
	st := openStore(t, things...)
	s := shadow.New(shadow.Options{Store: st.Shadows(), Workers: 1, CacheSize: 16})
	defer s.Close()
	ctx := context.Background()
	for round := 1; round <= 2; round++ {
		for _, th := range things {
			if _, err := s.Update(ctx, th, "", []byte(`{"state":{"reported":{"r":`+itoa(round)+`}}}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.Delete(ctx, "t0", ""); err != nil {
		t.Fatal(err)
	}
	for _, th := range things[1:] {
		body, err := s.Get(ctx, th, "")
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Version int64 `json:"version"`
			State   struct {
				Reported map[string]int `json:"reported"`
			} `json:"state"`
		}
		if err := json.Unmarshal(body, &d); err != nil || d.Version != 2 || d.State.Reported["r"] != 2 {
			t.Errorf("%s: %s", th, body)
		}
	}
	body, err := s.Update(ctx, "t0", "", []byte(`{"state":{"reported":{"r":3}}}`))
	if err != nil || !strings.Contains(string(body), `"version":3`) {
		t.Errorf("re-created after eviction: %s %v", body, err)
	}
}
