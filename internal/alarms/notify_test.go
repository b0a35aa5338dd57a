package alarms

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/ruleengine"
	"github.com/moteiot/mote/internal/store"
)

// mailbox is a real SMTP server (emersion/go-smtp) on 127.0.0.1:0 that
// keeps what it receives.
type mailbox struct {
	mu    sync.Mutex
	mails []mail
	addr  string
}

type mail struct {
	from string
	to   []string
	data string
}

type mailSession struct {
	box *mailbox
	m   mail
}

func (b *mailbox) NewSession(*smtp.Conn) (smtp.Session, error) { return &mailSession{box: b}, nil }
func (s *mailSession) Reset()                                  { s.m = mail{} }
func (s *mailSession) Logout() error                           { return nil }
func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	s.m.from = from
	return nil
}
func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.m.to = append(s.m.to, to)
	return nil
}
func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.m.data = string(b)
	s.box.mu.Lock()
	s.box.mails = append(s.box.mails, s.m)
	s.box.mu.Unlock()
	return nil
}

func (b *mailbox) received() []mail {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]mail(nil), b.mails...)
}

func startMailbox(t *testing.T) *mailbox {
	t.Helper()
	box := &mailbox{}
	srv := smtp.NewServer(box)
	srv.Domain = "localhost"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	box.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return box
}

// hook is a webhook endpoint that keeps the bodies it receives.
type hook struct {
	mu     sync.Mutex
	bodies []string
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.bodies = append(h.bodies, string(b))
	h.mu.Unlock()
}

func (h *hook) received() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.bodies...)
}

// newSink is the rules engine's webhook path for url.
func newSink(t *testing.T, st store.Store, url string) *ruleengine.Sink {
	t.Helper()
	e := ruleengine.New(ruleengine.Options{Store: st.Rules(), WebhookBackoff: time.Millisecond})
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	sink, err := e.Sink("$alarms", ruleengine.Action{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	return sink
}

func TestNotifyWebhookAndEmail(t *testing.T) {
	st := openStore(t, "dev")
	box := startMailbox(t)
	h := &hook{}
	web := httptest.NewServer(h)
	defer web.Close()
	s := newService(t, Options{Store: st.Alarms()})
	n := NewNotifier(NotifierOptions{Source: s, Webhook: newSink(t, st, web.URL),
		SMTP:     &SMTPOptions{Addr: box.addr, From: "mote@example.com", To: []string{"ops@example.com", "oncall@example.com"}},
		Throttle: -1})
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	a, err := s.Raise(t.Context(), "dev", "overheat", store.SeverityCritical, json.RawMessage(`{"temperature":99}`))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the webhook", func() bool { return len(h.received()) == 1 })
	var ev Event
	if err := json.Unmarshal([]byte(h.received()[0]), &ev); err != nil || ev.Event != EventRaised || ev.Alarm.ID != a.ID {
		t.Fatalf("webhook body %s: %+v, %v", h.received()[0], ev, err)
	}
	waitFor(t, "the e-mail", func() bool { return len(box.received()) == 1 })
	m := box.received()[0]
	if m.from != "mote@example.com" || strings.Join(m.to, ",") != "ops@example.com,oncall@example.com" {
		t.Fatalf("envelope %q → %q", m.from, m.to)
	}
	for _, want := range []string{"Subject: [mote] CRITICAL overheat alarm raised on dev", `"temperature": 99`, a.ID} {
		if !strings.Contains(m.data, want) {
			t.Errorf("e-mail lacks %q:\n%s", want, m.data)
		}
	}
}

// A flapping alarm (raised and cleared again and again) notifies once per
// throttle window; the rest are counted.
func TestNotifyThrottlesFlapping(t *testing.T) {
	st := openStore(t, "dev")
	h := &hook{}
	web := httptest.NewServer(h)
	defer web.Close()
	s := newService(t, Options{Store: st.Alarms()})
	reg := prometheus.NewRegistry()
	n := NewNotifier(NotifierOptions{Source: s, Webhook: newSink(t, st, web.URL), Throttle: time.Hour, Metrics: reg})
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for range 20 {
		a, err := s.Raise(t.Context(), "dev", "flap", store.SeverityMinor, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Clear(t.Context(), a.ID); err != nil {
			t.Fatal(err)
		}
	}
	throttled := n.m.WithLabelValues("webhook", "throttled")
	waitFor(t, "39 throttled", func() bool { return counterValue(throttled) == 39 })
	waitFor(t, "the one webhook", func() bool { return len(h.received()) == 1 })
	if got := counterValue(n.m.WithLabelValues("webhook", "queued")); got != 1 {
		t.Fatalf("webhooks queued: %v; want 1", got)
	}
}

// A dead SMTP server (accepts, never answers) costs one delivery its
// timeout and nothing else: webhooks go on.
func TestNotifyDeadSMTPServer(t *testing.T) {
	st := openStore(t, "dev")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent
		}
	}()
	h := &hook{}
	web := httptest.NewServer(h)
	defer web.Close()
	s := newService(t, Options{Store: st.Alarms()})
	n := NewNotifier(NotifierOptions{Source: s, Webhook: newSink(t, st, web.URL), Throttle: -1,
		SMTP: &SMTPOptions{Addr: l.Addr().String(), From: "a@b", To: []string{"c@d"}, Timeout: 200 * time.Millisecond}})
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for _, typ := range []string{"a", "b", "c"} {
		if _, err := s.Raise(t.Context(), "dev", typ, store.SeverityMinor, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "three webhooks", func() bool { return len(h.received()) == 3 })
	waitFor(t, "three failed e-mails", func() bool { return counterValue(n.m.WithLabelValues("email", "failed")) == 3 })
}
