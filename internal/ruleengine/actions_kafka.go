package ruleengine

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The kafka action produces the rule's output as one record:
//
//	{"type":"kafka","brokers":["host:9092"],"topic":"telemetry-${thing()}",
//	 "key":"${thing()}","partition":2,"tls":{...},
//	 "sasl":{"mechanism":"SCRAM-SHA-256","user":"mote","password":"..."}}
//
// The producer (franz-go) waits for all in-sync replicas (acks=all) and is
// idempotent, so its own retries do not duplicate records. Without a
// partition, records are spread by the murmur2 hash of the key, as the
// Java client does. Each destination has its own client, made on the
// first attempt; an attempt waits for the broker's ack at most the
// action's timeout.

// MaxKafkaBrokers is how many seed brokers a kafka action may name.
const MaxKafkaBrokers = 16

func checkKafka(c *compiledAction, bad badFunc) error {
	a := &c.Action
	if len(a.Brokers) == 0 {
		return bad("brokers", "a kafka action needs brokers: [\"host:port\", ...]")
	}
	if len(a.Brokers) > MaxKafkaBrokers {
		return bad("brokers", "at most %d brokers", MaxKafkaBrokers)
	}
	for _, b := range a.Brokers {
		host, port, err := net.SplitHostPort(b)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return bad("brokers", "%q is not host:port", b)
		}
	}
	if a.Topic == "" {
		return bad("topic", "a kafka action needs a topic")
	}
	t, err := parseText(a.Topic)
	if err != nil {
		return bad("topic", "%v", err)
	}
	for _, p := range t {
		if p.kind == 0 && !validKafkaTopic(p.lit, true) {
			return bad("topic", "a Kafka topic has only the characters a-z A-Z 0-9 . _ -")
		}
	}
	c.topic = t
	if a.Key != "" {
		if c.key, err = parseText(a.Key); err != nil {
			return bad("key", "%v", err)
		}
	}
	if a.Partition != nil && *a.Partition < 0 {
		return bad("partition", "must be 0 or more")
	}
	if s := a.SASL; s != nil {
		switch s.Mechanism {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		default:
			return bad("sasl.mechanism", "want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
		}
		if s.User == "" || s.Password == "" {
			return bad("sasl.user", "SASL needs a user and a password")
		}
	}
	return checkTLS(a.TLS, bad)
}

// validKafkaTopic reports whether s has only a Kafka topic's characters
// (part: a piece of a template, which may be empty).
func validKafkaTopic(s string, part bool) bool {
	if !part && (s == "" || len(s) > 249 || s == "." || s == "..") {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

type kafkaSink struct {
	a     *compiledAction
	cl    *kgo.Client
	stale atomic.Bool // an attempt failed with the broker's error: start afresh
}

// isStale reports whether the next attempt should use a new client: the
// last one failed. Records of a timed-out attempt stay in the client
// (the idempotent producer does not fail what it has written) and would
// fill its buffer, and after a rebuilt cluster the client may keep
// asking for topic ids that are gone; a fresh client starts clean.
func (k *kafkaSink) isStale() bool { return k.stale.Load() }

func newKafkaSink(a *compiledAction, d *destination) (sink, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(a.Brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),                     // idempotent: the default with acks=all
		kgo.RecordDeliveryTimeout(max(d.timeout, time.Second)), // its floor; the attempt's ctx ends sooner
		kgo.ProducerLinger(0),
		// Records wait in the destination's queue, not in the client.
		kgo.MaxBufferedRecords(max(1, d.e.opts.ActionConcurrency*d.batch)),
		kgo.ClientID("mote"),
	}
	if a.Partition != nil {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	tc, err := tlsConfig(a.TLS, false)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if s := a.SASL; s != nil {
		var m sasl.Mechanism
		switch s.Mechanism {
		case "PLAIN":
			m = plain.Auth{User: s.User, Pass: s.Password}.AsMechanism()
		case "SCRAM-SHA-256":
			m = scram.Auth{User: s.User, Pass: s.Password}.AsSha256Mechanism()
		default:
			m = scram.Auth{User: s.User, Pass: s.Password}.AsSha512Mechanism()
		}
		opts = append(opts, kgo.SASL(m))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return &kafkaSink{a: a, cl: cl}, nil
}

func (k *kafkaSink) send(ctx context.Context, jobs []job) error {
	recs := make([]*kgo.Record, 0, len(jobs))
	for _, j := range jobs {
		lookup := j.lookupOf()
		topic, err := k.a.topic.expandText(j.msg.Topic, j.msg.ClientID, j.msg.Thing, lookup)
		if err != nil {
			return fmt.Errorf("kafka topic: %w", err)
		}
		if !validKafkaTopic(topic, false) {
			return fmt.Errorf("kafka: topic template gives an invalid topic %q", topic)
		}
		r := &kgo.Record{Topic: topic, Value: j.body}
		if k.a.key != nil {
			key, err := k.a.key.expandText(j.msg.Topic, j.msg.ClientID, j.msg.Thing, lookup)
			if err != nil {
				return fmt.Errorf("kafka key: %w", err)
			}
			r.Key = []byte(key)
		}
		if k.a.Partition != nil {
			r.Partition = *k.a.Partition
		}
		recs = append(recs, r)
	}
	// Not ProduceSync: a record the idempotent producer has written is
	// not failed by ctx, so the wait for its ack is bounded here. Such a
	// record may still be acknowledged after the attempt failed: a retry
	// then duplicates it (at least once).
	done := make(chan error, len(recs))
	for _, r := range recs {
		k.cl.Produce(ctx, r, func(_ *kgo.Record, err error) { done <- err })
	}
	for range recs {
		select {
		case err := <-done:
			if err != nil {
				k.stale.Store(true)
				return fmt.Errorf("kafka %v: %w", k.a.Brokers, err)
			}
		case <-ctx.Done():
			k.stale.Store(true)
			return fmt.Errorf("kafka %v: no ack in time", k.a.Brokers)
		}
	}
	return nil
}

func (k *kafkaSink) close() { k.cl.Close() }
