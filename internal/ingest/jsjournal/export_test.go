package jsjournal

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// Wedge replaces the consumer's iterator by one on a subject nobody
// publishes to: Next gives nothing while this node's messages wait, as
// the ordered consumer did after its NATS server was killed.
func (j *Journal) Wedge(ctx context.Context) error {
	cons, err := j.js.OrderedConsumer(ctx, j.opts.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{j.opts.Prefix + ".nobody.wedged"},
	})
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	j.mu.Lock()
	old := j.it
	j.it = it
	j.mu.Unlock()
	old.Stop()
	return nil
}

// EndIterator stops the consumer's iterator as if it had ended by itself.
func (j *Journal) EndIterator() {
	j.mu.Lock()
	it := j.it
	j.mu.Unlock()
	it.Stop()
}
