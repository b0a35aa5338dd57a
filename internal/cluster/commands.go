package cluster

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/moteiot/mote/internal/bus/natsbus"
	"github.com/moteiot/mote/internal/core"
)

// Queued commands across nodes. A command is stored in the shared store
// by the node whose API queued it; the node its device is connected to
// delivers it. That node learns of the command twice: from the command's
// `queued` event, relayed at QoS 1 through the JetStream relay, and from
// CommandQueued, a core NATS message on <prefix>.ctl.command sent at once.
// The second does not depend on the relay's consumer, which can stall
// for its ack wait or longer when a NATS server is lost (TestKill9 saw a
// node's consumer stop after its server was killed: that node would not
// hear of commands queued elsewhere until their device reconnected). Both only
// schedule the thing: delivering is idempotent (the store's queued
// commands), so hearing twice costs one more look at the store.

// CommandQueued tells the other nodes that a command was queued for
// thing. At most once (core NATS); it never blocks.
func (n *Node) CommandQueued(thing string) {
	if n.closed.Load() {
		return
	}
	if err := n.nb.Conn().Publish(n.commandSubject(), appendCommandQueued(nil, n.opts.NodeID, thing)); err != nil {
		n.announceFailed.Add(1)
	}
}

// OnCommandQueued calls h with the thing of every command another node
// queued, on the NATS delivery goroutine (h must only enqueue). The queue
// is bounded by RelayQueue; garbage is counted as a decode failure.
func (n *Node) OnCommandQueued(h func(thing string)) error {
	sub, err := n.nb.Conn().Subscribe(n.commandSubject(), func(msg *nats.Msg) {
		node, thing, err := parseCommandQueued(msg.Data)
		if err != nil {
			n.decodeFailed.Add(1)
			return
		}
		if node != n.opts.NodeID {
			h(thing)
		}
	})
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	if err := sub.SetPendingLimits(n.opts.RelayQueue, natsbus.DefaultPendingBytes); err != nil {
		return fmt.Errorf("cluster: pending limits: %w", err)
	}
	n.mu.Lock()
	n.subs = append(n.subs, sub)
	n.mu.Unlock()
	return n.nb.Conn().FlushTimeout(natsbus.DefaultFlushTimeout)
}

func (n *Node) commandSubject() string { return n.opts.Prefix + ".ctl.command" }

// appendCommandQueued encodes "node\x00thing".
func appendCommandQueued(b []byte, node, thing string) []byte {
	b = append(b, node...)
	b = append(b, 0)
	return append(b, thing...)
}

func parseCommandQueued(data []byte) (node, thing string, err error) {
	nb, tb, ok := bytes.Cut(data, []byte{0})
	if !ok || len(nb) == 0 {
		return "", "", errors.New("command queued: no node")
	}
	if err := core.ValidateName("thing", string(tb)); err != nil {
		return "", "", err
	}
	return string(nb), string(tb), nil
}
