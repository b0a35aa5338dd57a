package ingest

import "github.com/moteiot/mote/internal/core"

// Durable is what the broker and the daemon use of an ingest journal:
// the write-ahead log of one node (Journal) or, in a cluster, the node's
// subject on JetStream (package ingest/jsjournal). Both run the same
// conformance suite (package ingest/ingesttest).
//
// The contract: Append/AppendAsync report success only once the message
// will survive the process being killed; the journal then hands each
// durable message exactly once, in order, with m.Seq set to its sequence
// number (increasing), to Options.Apply — after a restart too, for what
// Applied() had not reached. Start before anything appends; Drain after
// the last append (appends fail from then on) — it returns once what was
// handed to the consumer is applied; Close after the consumer's writes are
// flushed.
//
// The consumer is given to Start, not to the journal's Open: the journal
// is opened before the rules engine exists (the engine publishes through
// the broker, which appends to the journal), and Start is where the two are
// wired, explicitly. Until Start, Wants is false.
type Durable interface {
	Wants(topic string) bool
	Append(m core.Message) (seq uint64, err error)
	AppendAsync(m core.Message) (seq uint64, durable <-chan error, err error)
	// Err returns why appends are refused at the moment (a failing disk,
	// JetStream not answering), or nil.
	Err() error
	Start(c Consumer) (replayed int, err error)
	Drain()
	Close() error
}

var _ Durable = (*Journal)(nil)

// Consumer takes a journal's durable messages: the rules engine's durable
// pass (ruleengine.Engine).
type Consumer interface {
	// Durable reports whether a message on topic must be durable before
	// it is acknowledged (some enabled rule stores it).
	Durable(topic string) bool
	// ApplyDurable consumes durable messages (m.Seq set), in sequence
	// order, on one goroutine: replayed ones during Start, new ones after.
	// It may block; that holds back appends (backpressure).
	ApplyDurable(m core.Message)
}

// Funcs is a Consumer made of two functions (tests, small callers). A nil
// Wants wants nothing.
type Funcs struct {
	Wants func(topic string) bool
	Apply func(m core.Message)
}

// Durable calls f.Wants.
func (f Funcs) Durable(topic string) bool { return f.Wants != nil && f.Wants(topic) }

// ApplyDurable calls f.Apply.
func (f Funcs) ApplyDurable(m core.Message) { f.Apply(m) }

// EncodeRecord lays m out as a journal record (the layout of the
// write-ahead log, documented at encode); the JetStream journal stores the
// same bytes as a message's data.
func EncodeRecord(m core.Message) []byte { return encode(m) }

// DecodeRecord reads a record made by EncodeRecord; m.Seq is not set.
// Damaged or unknown records return an error.
func DecodeRecord(rec []byte) (core.Message, error) { return decode(rec) }
