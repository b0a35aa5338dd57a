package cluster

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus/natsbus"
)

// Leases: every node publishes a heartbeat on "<prefix>.ctl.lease" each
// LeaseInterval, and every node keeps, in memory, when it last heard each
// other node. A node not heard for LeaseTimeout is lost: a surviving node
// marks the things connected on it disconnected in the store
// (ResetNodePresence, whose row locks give each thing to one survivor, so
// each gets one disconnected event) and publishes their disconnected
// events. Nodes that things are connected on in the store but that were
// never heard (they died before this node started) are checked too: they
// are given one LeaseTimeout from the moment this node learnt of them.
//
// Why heartbeats over NATS rather than a lease row in PostgreSQL: a node
// that cannot reach NATS cannot deliver to its devices' subscribers on
// other nodes nor be reached by device-directed work, so "lost" means
// what matters for the cluster; and no table, no write per node per
// interval in the database. A node that does not hear its own heartbeat
// (it is the one cut off) takes no other node for lost. A node that was cut off from NATS for longer
// than the timeout (its things were reset meanwhile) notices when it
// hears its own heartbeat again after a gap, and records its live
// connections again (Rejoined).

// LeaseStore is where presence is reset (store.ThingStore).
type LeaseStore interface {
	ConnectedNodes(ctx context.Context) ([]string, error)
	ResetNodePresence(ctx context.Context, node string) ([]string, error)
}

// LeaseOptions configure the leases of a Node.
type LeaseOptions struct {
	// Interval between heartbeats; Timeout after which a node not heard is
	// lost (> Interval).
	Interval, Timeout time.Duration
	Store             LeaseStore
	// Lost hears the things marked disconnected because node was lost
	// (they get their disconnected events there). It runs on the lease's
	// goroutine.
	Lost func(node string, things []string)
	// Gone, when set, hears every node found lost here, things or not
	// (the adoption of its ingest backlog, ingest/jsjournal Adopter). It
	// runs on the lease's goroutine and must return at once.
	Gone func(node string)
	// Rejoined runs when this node hears itself again after a gap longer
	// than Timeout: other nodes may have reset its things.
	Rejoined func()
}

// Lease is a Node's heartbeat and its watch over the other nodes.
type Lease struct {
	n    *Node
	o    LeaseOptions
	log  *slog.Logger
	sub  *nats.Subscription
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	seen     map[string]time.Time // node → last heard (or first learnt of)
	selfSeen time.Time

	lost, reset, rejoined, sent, failed, isolated atomic.Uint64
	closed                                        atomic.Bool
}

// StartLease starts heartbeats and the watch over the other nodes. Close
// stops them.
func (n *Node) StartLease(o LeaseOptions) (*Lease, error) {
	if o.Interval <= 0 || o.Timeout <= o.Interval {
		return nil, errors.New("cluster: lease: want 0 < interval < timeout")
	}
	l := &Lease{n: n, o: o, log: n.log, stop: make(chan struct{}), done: make(chan struct{}),
		seen: map[string]time.Time{}, selfSeen: time.Now()}
	sub, err := n.nb.Conn().Subscribe(n.leaseSubject(), l.onHeartbeat)
	if err != nil {
		return nil, errors.Join(errors.New("cluster: lease: subscribe"), err)
	}
	if err := sub.SetPendingLimits(n.opts.RelayQueue, natsbus.DefaultPendingBytes); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	l.sub = sub
	if n.opts.Metrics != nil {
		if err := l.register(n.opts.Metrics); err != nil {
			_ = sub.Unsubscribe()
			return nil, err
		}
	}
	l.beat()
	go l.run()
	return l, nil
}

func (n *Node) leaseSubject() string { return n.opts.Prefix + ".ctl.lease" }

// The heartbeat: "1" and the node id.
func appendHeartbeat(dst []byte, node string) []byte {
	return append(append(dst, '1'), node...)
}

func parseHeartbeat(data []byte) (string, error) {
	if len(data) < 2 || data[0] != '1' || bytes.IndexByte(data, 0) >= 0 || len(data) > 65 {
		return "", errors.New("cluster: heartbeat: malformed")
	}
	return string(data[1:]), nil
}

func (l *Lease) beat() {
	if l.n.closed.Load() || l.closed.Load() {
		return
	}
	if err := l.n.nb.Conn().Publish(l.n.leaseSubject(), appendHeartbeat(nil, l.n.opts.NodeID)); err != nil {
		l.failed.Add(1)
		return
	}
	l.sent.Add(1)
}

func (l *Lease) onHeartbeat(msg *nats.Msg) {
	node, err := parseHeartbeat(msg.Data)
	if err != nil {
		l.n.decodeFailed.Add(1)
		return
	}
	now := time.Now()
	l.mu.Lock()
	if node != l.n.opts.NodeID {
		l.seen[node] = now
		l.mu.Unlock()
		return
	}
	gap := now.Sub(l.selfSeen)
	l.selfSeen = now
	l.mu.Unlock()
	if gap > l.o.Timeout && l.o.Rejoined != nil {
		// Cut off from the others long enough to be taken for lost.
		l.rejoined.Add(1)
		l.log.Warn("this node was not heard by the cluster for longer than the lease; recording its connections again", "gap", gap.Round(time.Millisecond))
		go l.o.Rejoined()
	}
}

func (l *Lease) run() {
	defer close(l.done)
	t := time.NewTicker(l.o.Interval)
	defer t.Stop()
	l.learn()
	lastLearn := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.beat()
		if time.Since(lastLearn) >= l.o.Timeout {
			l.learn()
			lastLearn = time.Now()
		}
		l.expire()
	}
}

// learn adds the nodes things are connected on that this node has not
// heard of, as if heard now.
func (l *Lease) learn() {
	ctx, cancel := context.WithTimeout(context.Background(), l.o.Timeout)
	defer cancel()
	nodes, err := l.o.Store.ConnectedNodes(ctx)
	if err != nil {
		l.log.Warn("cluster lease: connected nodes not read", "error", err)
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, node := range nodes {
		if _, ok := l.seen[node]; !ok && node != l.n.opts.NodeID {
			l.seen[node] = now
		}
	}
}

// expire resets the presence of the nodes not heard within the timeout.
func (l *Lease) expire() {
	now := time.Now()
	var gone []string
	l.mu.Lock()
	if now.Sub(l.selfSeen) > l.o.Interval+l.o.Timeout/2 || l.n.closed.Load() {
		// This node does not hear its own heartbeats: it is the one cut
		// off, and must not take the others for lost.
		l.mu.Unlock()
		l.isolated.Add(1)
		return
	}
	for node, at := range l.seen {
		if now.Sub(at) > l.o.Timeout {
			gone = append(gone, node)
		}
	}
	l.mu.Unlock()
	sort.Strings(gone)
	for _, node := range gone {
		ctx, cancel := context.WithTimeout(context.Background(), l.o.Timeout)
		things, err := l.o.Store.ResetNodePresence(ctx, node)
		cancel()
		if err != nil {
			l.log.Warn("cluster lease: presence of a lost node not reset; retrying", "lost", node, "error", err)
			continue
		}
		l.mu.Lock()
		if at, ok := l.seen[node]; ok && now.Sub(at) > l.o.Timeout {
			delete(l.seen, node) // unless it was heard meanwhile
		}
		l.mu.Unlock()
		l.lost.Add(1)
		l.reset.Add(uint64(len(things)))
		l.log.Warn("cluster node lost: not heard within the lease", "lost", node, "timeout", l.o.Timeout, "things_disconnected", len(things))
		if len(things) > 0 && l.o.Lost != nil {
			l.o.Lost(node, things)
		}
		if l.o.Gone != nil {
			l.o.Gone(node)
		}
	}
}

// Alive reports whether node was heard within the lease (this node is).
func (l *Lease) Alive(node string) bool {
	if node == l.n.opts.NodeID {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.seen[node]
	return ok && time.Since(at) <= l.o.Timeout
}

// Nodes returns the nodes heard within the lease, this one included.
func (l *Lease) Nodes() []string {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []string{l.n.opts.NodeID}
	for node, at := range l.seen {
		if now.Sub(at) <= l.o.Timeout {
			out = append(out, node)
		}
	}
	sort.Strings(out)
	return out
}

// Close stops heartbeats (the other nodes will find this node lost after
// the timeout unless it starts again).
func (l *Lease) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	close(l.stop)
	<-l.done
	if err := l.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
		return err
	}
	return nil
}

func (l *Lease) register(reg prometheus.Registerer) error {
	counter := func(name, help string, labels prometheus.Labels, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	const hbHelp = "Lease heartbeats this node published, by result (sent, failed: not buffered by NATS)."
	for _, c := range []prometheus.Collector{
		counter("mote_cluster_nodes_lost_total", "Other nodes found lost here (not heard within --cluster-lease-timeout) whose presence this node reset.", nil,
			func() float64 { return float64(l.lost.Load()) }),
		counter("mote_cluster_lost_things_total", "Things marked disconnected here because the node they were connected on was lost.", nil,
			func() float64 { return float64(l.reset.Load()) }),
		counter("mote_cluster_lease_isolated_total", "Lease checks skipped because this node did not hear its own heartbeat (cut off from NATS): it takes no other node for lost then.", nil,
			func() float64 { return float64(l.isolated.Load()) }),
		counter("mote_cluster_rejoined_total", "Times this node heard itself again after a gap longer than the lease and recorded its connections again.", nil,
			func() float64 { return float64(l.rejoined.Load()) }),
		counter("mote_cluster_lease_heartbeats_total", hbHelp, prometheus.Labels{"result": "sent"},
			func() float64 { return float64(l.sent.Load()) }),
		counter("mote_cluster_lease_heartbeats_total", hbHelp, prometheus.Labels{"result": "failed"},
			func() float64 { return float64(l.failed.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mote_cluster_nodes", Help: "Nodes heard within the lease, this one included."},
			func() float64 { return float64(len(l.Nodes())) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
