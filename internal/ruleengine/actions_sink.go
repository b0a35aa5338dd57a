package ruleengine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
)

// A sink is the connection of one destination to another system (Kafka,
// NATS, PostgreSQL, an MQTT broker). The destination makes it on its
// first attempt (never on a worker or under e.mu), sends every attempt
// through it and closes it when the rule is deleted, replaced or the
// engine closes (dispatch.go). Its own buffering is bounded: the
// destination's queue is the buffer, an attempt waits at most its
// timeout (ctx), so a dead counterpart fills only that queue.
type sink interface {
	// send delivers jobs (one, or a batch for a batching sink) before
	// ctx ends; an error fails them all.
	send(ctx context.Context, jobs []job) error
	close()
}

// batchSize is how many queued jobs a destination hands its sink at once
// (Options.ActionBatch; a postgres INSERT also keeps under 65,535
// parameters): 1 for the actions that are not sinks. A batch is one
// attempt: its records are sent together and their acks awaited
// together; when it fails it is retried whole.
func batchSize(a *compiledAction, n int) int {
	switch a.Type {
	case ActionPostgres:
		return min(n, postgresBatch(a))
	case ActionKafka, ActionNATS, ActionMQTT:
		return n
	}
	return 1
}

// newSink connects an action's sink. ctx bounds the connection attempt.
func (e *Engine) newSink(ctx context.Context, d *destination) (sink, error) {
	a := d.a
	if a.sealErr != nil {
		return nil, a.sealErr
	}
	switch a.Type {
	case ActionKafka:
		return newKafkaSink(a, d)
	case ActionNATS:
		return newNATSSink(ctx, a, d)
	case ActionPostgres:
		return newPostgresSink(ctx, a, d)
	case ActionMQTT:
		return newMQTTSink(ctx, a, d)
	}
	return nil, fmt.Errorf("%s: not a sink", a.Type)
}

// sinkHolder keeps a destination's sink: made on first use, closed when
// the destination is done with it.
type sinkHolder struct {
	mu      sync.Mutex
	s       sink
	closing bool // the destination's rule is gone: close when idle
}

// get returns the sink, connecting it if there is none.
func (h *sinkHolder) get(ctx context.Context, e *Engine, d *destination) (sink, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st, ok := h.s.(interface{ isStale() bool }); ok && st.isStale() {
		h.s.close()
		h.s = nil
	}
	if h.s != nil {
		return h.s, nil
	}
	s, err := e.newSink(ctx, d)
	if err != nil {
		return nil, err
	}
	h.s = s
	return s, nil
}

// shut closes the sink (a later get connects a new one).
func (h *sinkHolder) shut() {
	h.mu.Lock()
	s := h.s
	h.s = nil
	h.mu.Unlock()
	if s != nil {
		s.close()
	}
}

// tlsConfig builds the TLS of an action (nil: none unless on is set).
func tlsConfig(t *TLSConfig, on bool) (*tls.Config, error) {
	if t == nil {
		if on {
			return &tls.Config{MinVersion: tls.VersionTLS12}, nil
		}
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CA != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(t.CA)) {
			return nil, errors.New("tls.ca: no PEM certificate")
		}
		c.RootCAs = pool
	}
	if t.Cert != "" || t.Key != "" {
		cert, err := tls.X509KeyPair([]byte(t.Cert), []byte(t.Key))
		if err != nil {
			return nil, errors.New("tls.cert and tls.key: not a PEM certificate and its private key")
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// checkTLS validates an action's TLS settings at rule creation. A sealed
// key is not checked (it is only opened to run).
func checkTLS(t *TLSConfig, bad badFunc) error {
	if t == nil {
		return nil
	}
	if t.CA != "" {
		if !x509.NewCertPool().AppendCertsFromPEM([]byte(t.CA)) {
			return bad("tls.ca", "no PEM certificate")
		}
	}
	if (t.Cert == "") != (t.Key == "") {
		return bad("tls.cert", "give both tls.cert and tls.key, or neither")
	}
	return nil
}
