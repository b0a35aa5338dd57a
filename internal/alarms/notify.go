package alarms

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/smtp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WebhookSender queues a webhook without waiting; *ruleengine.Sink
// satisfies it (the rules' bounded, non-blocking action path).
type WebhookSender interface {
	Send(topic string, body []byte)
}

// SMTPOptions configure e-mail notifications.
type SMTPOptions struct {
	Addr     string   // host:port of the SMTP server
	From     string   // envelope and header sender
	To       []string // recipients
	Username string   // with Password: PLAIN authentication (only over TLS, or to localhost)
	Password string
	// Timeout bounds one whole delivery: connect, dialogue and data
	// (default 10s).
	Timeout time.Duration
	// InsecureSkipVerify accepts any certificate in STARTTLS (tests,
	// private relays).
	InsecureSkipVerify bool
}

// NotifierOptions configure a Notifier.
type NotifierOptions struct {
	Source  *Service      // required: the events
	Webhook WebhookSender // nil: no webhook
	SMTP    *SMTPOptions  // nil: no e-mail
	// Throttle is the least time between two notifications of the same
	// (thing, alarm type): a flapping alarm notifies once per Throttle,
	// the others are counted in mote_alarm_notifications_total{result=
	// "throttled"} (default 1 minute; negative: none).
	Throttle time.Duration
	// Queue bounds the events waiting for the notifier, and the e-mails
	// waiting for the SMTP server (default 1,000 each).
	Queue   int
	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

// Notifier sends alarm events to a webhook and by e-mail.
type Notifier struct {
	o      NotifierOptions
	log    *slog.Logger
	events <-chan Event
	cancel func()
	mail   chan Event
	wg     sync.WaitGroup
	ctx    context.Context
	stop   context.CancelFunc

	last map[string]time.Time // (thing, type) → last notification

	m *prometheus.CounterVec

	logMu    sync.Mutex
	lastLog  time.Time
	unlogged atomic.Int64
}

// NewNotifier returns a Notifier; Start subscribes it to the events.
func NewNotifier(o NotifierOptions) *Notifier {
	if o.Throttle == 0 {
		o.Throttle = time.Minute
	}
	if o.Queue <= 0 {
		o.Queue = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SMTP != nil && o.SMTP.Timeout <= 0 {
		o.SMTP.Timeout = 10 * time.Second
	}
	n := &Notifier{o: o, log: o.Logger, mail: make(chan Event, o.Queue), last: map[string]time.Time{}}
	n.ctx, n.stop = context.WithCancel(context.Background())
	n.m = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_alarm_notifications_total",
		Help: "Alarm notifications by channel (webhook, email) and result: queued (webhook, handed to the rules' action path), sent, failed, throttled, dropped (queue full)."},
		[]string{"channel", "result"})
	if o.Metrics != nil {
		o.Metrics.MustRegister(n.m)
	}
	return n
}

// Start subscribes to the service's events and runs the notifier.
func (n *Notifier) Start(ctx context.Context) error {
	n.events, n.cancel = n.o.Source.Subscribe(n.o.Queue)
	n.wg.Add(2)
	go n.loop()
	go n.mailer()
	return nil
}

// Close stops the notifier: queued e-mails are abandoned.
func (n *Notifier) Close() error {
	if n.cancel != nil {
		n.cancel()
	}
	n.stop()
	n.wg.Wait()
	return nil
}

func (n *Notifier) loop() {
	defer n.wg.Done()
	defer close(n.mail)
	for {
		select {
		case ev, ok := <-n.events:
			if !ok {
				return
			}
			n.handle(ev, time.Now())
		case <-n.ctx.Done():
			return
		}
	}
}

// handle notifies one event unless its alarm notified within Throttle.
func (n *Notifier) handle(ev Event, now time.Time) {
	key := ev.Alarm.Thing + "\x00" + ev.Alarm.Type
	if n.o.Throttle > 0 {
		if t, ok := n.last[key]; ok && now.Sub(t) < n.o.Throttle {
			if n.o.Webhook != nil {
				n.m.WithLabelValues("webhook", "throttled").Inc()
			}
			if n.o.SMTP != nil {
				n.m.WithLabelValues("email", "throttled").Inc()
			}
			return
		}
		n.last[key] = now
		if len(n.last) > 10_000 { // bounded: forget what is past its window
			for k, t := range n.last {
				if now.Sub(t) >= n.o.Throttle {
					delete(n.last, k)
				}
			}
		}
	}
	if n.o.Webhook != nil {
		body, _ := json.Marshal(ev)
		n.o.Webhook.Send(EventTopic(ev.Alarm.Thing, ev.Alarm.Type, ev.Event), body)
		n.m.WithLabelValues("webhook", "queued").Inc()
	}
	if n.o.SMTP != nil {
		select {
		case n.mail <- ev:
		default:
			n.m.WithLabelValues("email", "dropped").Inc()
			n.logLimited("alarm e-mail dropped: queue full", "thing", ev.Alarm.Thing, "type", ev.Alarm.Type)
		}
	}
}

func (n *Notifier) mailer() {
	defer n.wg.Done()
	for ev := range n.mail {
		if n.ctx.Err() != nil {
			return
		}
		if err := n.sendMail(ev); err != nil {
			n.m.WithLabelValues("email", "failed").Inc()
			n.logLimited("alarm e-mail failed", "thing", ev.Alarm.Thing, "type", ev.Alarm.Type, "err", err)
			continue
		}
		n.m.WithLabelValues("email", "sent").Inc()
	}
}

func (n *Notifier) logLimited(msg string, args ...any) {
	n.logMu.Lock()
	now := time.Now()
	if now.Sub(n.lastLog) < time.Second {
		n.logMu.Unlock()
		n.unlogged.Add(1)
		return
	}
	n.lastLog = now
	n.logMu.Unlock()
	n.log.Warn(msg, append(args, "suppressed", n.unlogged.Swap(0))...)
}

// Message returns the subject and text of the e-mail of an event.
func Message(ev Event) (subject, body string) {
	a := ev.Alarm
	subject = fmt.Sprintf("[mote] %s %s alarm %s on %s", strings.ToUpper(a.Severity), a.Type, ev.Event, a.Thing)
	var b strings.Builder
	fmt.Fprintf(&b, "Alarm %s of thing %s was %s at %s.\r\n\r\n", a.Type, a.Thing, ev.Event, ev.Time.Format(time.RFC3339))
	fmt.Fprintf(&b, "Severity: %s\r\nStatus: %s\r\nCount: %d\r\nFirst: %s\r\nLast: %s\r\nId: %s\r\n",
		a.Severity, a.Status, a.Count, a.CreatedAt.Format(time.RFC3339), a.LastAt.Format(time.RFC3339), a.ID)
	if len(a.Details) > 0 {
		var pretty bytes.Buffer
		if json.Indent(&pretty, a.Details, "", "  ") == nil {
			b.WriteString("\r\nDetails:\r\n")
			b.WriteString(strings.ReplaceAll(pretty.String(), "\n", "\r\n"))
			b.WriteString("\r\n")
		}
	}
	return subject, b.String()
}

// sendMail delivers one e-mail within SMTP.Timeout.
func (n *Notifier) sendMail(ev Event) error {
	o := n.o.SMTP
	deadline := time.Now().Add(o.Timeout)
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(n.ctx, "tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline) // every read and write of the dialogue
	host, _, _ := net.SplitHostPort(o.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host, InsecureSkipVerify: o.InsecureSkipVerify}); err != nil {
			return fmt.Errorf("smtp: starttls: %w", err)
		}
	}
	if o.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", o.Username, o.Password, host)); err != nil {
			return fmt.Errorf("smtp: auth: %w", err)
		}
	}
	if err := c.Mail(o.From); err != nil {
		return fmt.Errorf("smtp: MAIL FROM: %w", err)
	}
	for _, to := range o.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("smtp: RCPT TO %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp: DATA: %w", err)
	}
	subject, body := Message(ev)
	fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s",
		o.From, strings.Join(o.To, ", "), mime.QEncoding.Encode("utf-8", subject), time.Now().UTC().Format(time.RFC1123Z), body)
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp: DATA: %w", err)
	}
	return c.Quit()
}
