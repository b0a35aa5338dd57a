package ruleengine

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/moteiot/mote/internal/seal"
)

// The nats action publishes the rule's output on a NATS subject:
//
//	{"type":"nats","url":"nats://user:pass@host:4222","subject":"mote.${thing()}",
//	 "jetstream":true,"creds":"-----BEGIN NATS USER JWT-----...","tls":{...}}
//
// With jetstream the attempt waits for the stream's ack (a subject no
// stream takes fails); without, a core NATS publish is at most once: it
// succeeds once written to the connection. The client buffers nothing
// while it reconnects (ReconnectBufSize -1): an attempt then fails and is
// retried, so the destination's bounded queue is the only buffer.

func checkNATS(c *compiledAction, bad badFunc) error {
	a := &c.Action
	u, err := url.Parse(a.URL)
	if a.URL == "" || err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
		return bad("url", "a nats action needs a nats:// or tls:// URL")
	}
	if a.Subject == "" {
		return bad("subject", "a nats action needs a subject")
	}
	t, err := parseText(a.Subject)
	if err != nil {
		return bad("subject", "%v", err)
	}
	for _, p := range t {
		if p.kind == 0 && strings.ContainsAny(p.lit, " \t\r\n*>") {
			return bad("subject", "a subject to publish on has no spaces or wildcards (* >)")
		}
	}
	c.subj = t
	if a.Creds != "" && !seal.IsSealed(a.Creds) {
		if _, _, err := parseCreds(a.Creds); err != nil {
			return bad("creds", "%v", err)
		}
	}
	return checkTLS(a.TLS, bad)
}

// parseCreds reads the user JWT and the seed of a .creds file.
func parseCreds(creds string) (string, string, error) {
	j, err := jwt.ParseDecoratedJWT([]byte(creds))
	if err != nil {
		return "", "", fmt.Errorf("not a NATS .creds file")
	}
	kp, err := jwt.ParseDecoratedNKey([]byte(creds))
	if err != nil {
		return "", "", fmt.Errorf("not a NATS .creds file: no seed")
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", "", fmt.Errorf("not a NATS .creds file: no seed")
	}
	return j, string(seed), nil
}

// validSubject reports whether s is a subject to publish on.
func validSubject(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
	}
	return true
}

type natsSink struct {
	a  *compiledAction
	nc *nats.Conn
	js jetstream.JetStream
}

func newNATSSink(ctx context.Context, a *compiledAction, d *destination) (sink, error) {
	timeout := d.timeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	opts := []nats.Option{
		nats.Name("mote rule " + d.rule.rule.Name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectBufSize(-1), // fail while reconnecting: the destination queues
	}
	tc, err := tlsConfig(a.TLS, false)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	if tc != nil {
		opts = append(opts, nats.Secure(tc))
	}
	if a.Creds != "" {
		j, seed, err := parseCreds(a.Creds)
		if err != nil {
			return nil, fmt.Errorf("nats: creds: %w", err)
		}
		opts = append(opts, nats.UserJWTAndSeed(j, seed))
	}
	nc, err := nats.Connect(a.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", redactedURL(a.URL), err)
	}
	s := &natsSink{a: a, nc: nc}
	if a.JetStream {
		// Acks outstanding at once: a batch (the attempt waits for them).
		if s.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(max(1, d.batch))); err != nil {
			nc.Close()
			return nil, fmt.Errorf("nats %s: jetstream: %w", redactedURL(a.URL), err)
		}
	}
	return s, nil
}

func (s *natsSink) send(ctx context.Context, jobs []job) error {
	var acks []jetstream.PubAckFuture
	for _, j := range jobs {
		subj, err := s.a.subj.expandText(j.msg.Topic, j.msg.ClientID, j.msg.Thing, j.lookupOf())
		if err != nil {
			return fmt.Errorf("nats subject: %w", err)
		}
		if !validSubject(subj) {
			return fmt.Errorf("nats: subject template gives an invalid subject %q", subj)
		}
		if s.js != nil {
			// The batch goes out at once; the acks are awaited below.
			var f jetstream.PubAckFuture
			if f, err = s.js.PublishAsync(subj, j.body); err == nil {
				acks = append(acks, f)
			}
		} else {
			err = s.nc.Publish(subj, j.body)
		}
		if err != nil {
			return fmt.Errorf("nats %s: publish on %q: %w", redactedURL(s.a.URL), subj, err)
		}
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("nats %s: publish on %q: %w", redactedURL(s.a.URL), f.Msg().Subject, err)
		case <-ctx.Done():
			return fmt.Errorf("nats %s: no JetStream ack in time", redactedURL(s.a.URL))
		}
	}
	return nil
}

func (s *natsSink) close() { s.nc.Close() }
