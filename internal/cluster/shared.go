package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus/natsbus"
	"github.com/moteiot/mote/internal/core"
)

// Shared subscriptions across nodes (see broker/shared.go): a node with
// members of a shared group joins a NATS queue group named for the
// (group, filter) pair on the subjects of the filter, under the relay's
// prefix. Every accepted message is published there once by the node that
// accepted it; NATS gives it to one queue member, whichever node that is
// (the accepting node included), and that node delivers it to one local
// member of the group.

// SharedRelayer delivers a message to one local member of a shared group
// (*broker.Broker).
type SharedRelayer interface {
	RelayShared(m core.Message, share string) error
}

type sharedStats struct {
	received, dropped atomic.Uint64
	groups            atomic.Int64
}

// queueName is the NATS queue group of a share: a digest, since a group
// and filter may hold characters NATS does not allow in a queue name.
func queueName(share string) string {
	sum := sha256.Sum256([]byte(share))
	return "mote-share-" + hex.EncodeToString(sum[:12])
}

// SharedJoin subscribes this node to its share of the messages on filter
// for the group (broker.SharedLink).
func (n *Node) SharedJoin(share, group, filter string) error {
	if n.closed.Load() {
		return errors.New("cluster: closed")
	}
	subjects, err := natsbus.FilterSubjects(n.opts.Prefix+".msg", filter)
	if err != nil {
		return err
	}
	// QoS 1/2 messages are on the JetStream relay's subjects
	// (jsrelay.go), which core NATS subscribers hear too.
	js, err := natsbus.FilterSubjects(n.opts.Prefix+".relay", filter)
	if err != nil {
		return err
	}
	subjects = append(subjects, js...)
	q := queueName(share)
	handler := func(msg *nats.Msg) {
		m, err := natsbus.DecodeMessage(msg.Data)
		if err != nil {
			n.decodeFailed.Add(1)
			return
		}
		n.mu.Lock()
		r, ok := n.broker.(SharedRelayer) // nil until Start
		n.mu.Unlock()
		if !ok {
			n.shared.dropped.Add(1)
			return
		}
		if err := r.RelayShared(m, share); err != nil {
			n.shared.dropped.Add(1)
			return
		}
		n.shared.received.Add(1)
	}
	var subs []*nats.Subscription
	for _, subject := range subjects {
		sub, err := n.nb.Conn().QueueSubscribe(subject, q, handler)
		if err == nil {
			err = sub.SetPendingLimits(n.opts.RelayQueue, natsbus.DefaultPendingBytes)
		}
		if err != nil {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			return fmt.Errorf("cluster: shared subscription: %w", err)
		}
		subs = append(subs, sub)
	}
	n.mu.Lock()
	if n.shares == nil {
		n.shares = map[string][]*nats.Subscription{}
	}
	n.shares[share] = subs
	n.mu.Unlock()
	n.shared.groups.Add(1)
	return nil
}

// SharedLeave stops this node's share of a group's messages.
func (n *Node) SharedLeave(share string) {
	n.mu.Lock()
	subs := n.shares[share]
	delete(n.shares, share)
	for _, s := range subs {
		if k, err := s.Dropped(); err == nil && k > 0 {
			n.retire += uint64(k)
		}
	}
	n.mu.Unlock()
	if subs != nil {
		n.shared.groups.Add(-1)
	}
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
}

func (n *Node) registerShared(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mote_cluster_shared_received_total",
			Help: "Messages NATS gave this node for one of its shared subscription groups, handed to the broker to deliver to one local member."},
			func() float64 { return float64(n.shared.received.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mote_cluster_shared_dropped_total",
			Help: "Messages for a shared subscription group that the broker refused (shutting down)."},
			func() float64 { return float64(n.shared.dropped.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mote_cluster_shared_groups",
			Help: "Shared subscription groups (group and filter) this node has members of and takes a share of the messages for."},
			func() float64 { return float64(n.shared.groups.Load()) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
