package cluster

// Last wills across nodes (docs/cluster.md, "Last wills").
//
// A will a node's broker publishes (its device's connection was lost) is
// relayed like any accepted message: the broker hands it to the bus with
// Protocol "will" (ProtocolWill), and Node.Publish relays it, QoS 0 on
// core NATS, QoS 1/2 on the JetStream relay, where the shared groups'
// queue subscriptions hear it too.
//
// A node killed outright sends no will. So each node records the will of
// every live connection in the JetStream key-value bucket MOTE_WILLS
// (replicas --cluster-replicas, size --cluster-wills-max-bytes), under
// "<node token>.<client id token>", and deletes it when the connection
// ends without its will pending (clean DISCONNECT, will sent, taken over).
// The records are written by one goroutine per node from a bounded queue
// (--cluster-will-queue): the CONNECT path never waits for JetStream. A
// record that finds the queue full is not written (counted,
// result="record_dropped"): that connection's will is then not sent if
// its node dies.
//
// A survivor that marks a lost node's things disconnected (lease.go,
// Lost) calls PublishLost: it lists the lost node's records, waits out
// each one's will delay, claims it by deleting it at the revision it read
// (of two survivors only one deletes it: the other's delete fails), then
// publishes it unless its client id is held again somewhere in the
// cluster (the device reconnected: MQTT cancels the will) or the thing's
// policies no longer allow the topic. A node starting under an id does
// the same for the records it left behind.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/moteiot/mote/internal/core"
)

// ProtocolWill marks a last will a broker published (core.Message.Protocol).
const ProtocolWill = "will"

// Defaults of WillOptions.
const (
	DefaultWillBucket   = "MOTE_WILLS"
	DefaultWillMaxBytes = 64 << 20
	DefaultWillQueue    = 4096
	DefaultWillTimeout  = 5 * time.Second
	// MaxWillDelay bounds how long a survivor waits out a lost will's
	// delay (MQTT 5 allows 136 years).
	MaxWillDelay = 24 * time.Hour
)

// WillOptions configure the wills of a Node (Node.OpenWills).
type WillOptions struct {
	Bucket   string // DefaultWillBucket when empty
	Replicas int    // 1 when zero
	MaxBytes int64  // the bucket's size; beyond it records are refused (counted)
	Queue    int    // record writes waiting at once
	Timeout  time.Duration
}

// WillPublisher publishes a lost node's will on behalf of its thing
// (*broker.Broker): the thing's policies checked now (KindForbidden), then
// the normal publish path (local subscribers, retained, the platform
// services, the other nodes).
type WillPublisher interface {
	PublishWill(ctx context.Context, m core.Message) error
}

// WillRecord is what a node records of a live connection's will.
type WillRecord struct {
	Node       string          `json:"node"`
	ClientID   string          `json:"clientId"`
	Thing      string          `json:"thing"`
	Topic      string          `json:"topic"`
	Payload    []byte          `json:"payload,omitempty"`
	QoS        byte            `json:"qos,omitempty"`
	Retain     bool            `json:"retain,omitempty"`
	Delay      uint32          `json:"delay,omitempty"` // seconds (MQTT 5 will delay interval)
	Properties []core.Property `json:"properties,omitempty"`
}

const willVersion = 1

type willWire struct {
	V int `json:"v"`
	WillRecord
}

func encodeWill(w WillRecord) ([]byte, error) {
	return json.Marshal(willWire{V: willVersion, WillRecord: w})
}

// decodeWill parses a record read from the bucket.
func decodeWill(data []byte) (WillRecord, error) {
	var w willWire
	if err := json.Unmarshal(data, &w); err != nil {
		return WillRecord{}, fmt.Errorf("will record: %w", err)
	}
	switch {
	case w.V != willVersion:
		return WillRecord{}, fmt.Errorf("will record: unknown version %d", w.V)
	case w.ClientID == "" || w.Node == "":
		return WillRecord{}, errors.New("will record: no client id or node")
	case w.Topic == "" || !utf8.ValidString(w.Topic):
		return WillRecord{}, errors.New("will record: bad topic")
	case w.QoS > 2:
		return WillRecord{}, fmt.Errorf("will record: qos %d", w.QoS)
	}
	return w.WillRecord, nil
}

// token is a KV-key-safe digest of s.
func token(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:n])
}

func willKey(node, clientID string) string { return token(node, 8) + "." + token(clientID, 16) }

type willOp struct {
	set      bool
	clientID string
	conn     uint64
	rec      []byte
}

type willHeld struct {
	conn uint64
	rev  uint64
}

// Wills records this node's wills and publishes lost nodes' ones.
type Wills struct {
	n  *Node
	o  WillOptions
	kv jetstream.KeyValue

	ops  chan willOp
	stop chan struct{}
	done chan struct{}
	wg   sync.WaitGroup // PublishLost runs
	held map[string]willHeld

	mu  sync.Mutex
	pub WillPublisher

	closeOnce sync.Once
	closed    atomic.Bool

	total        *prometheus.CounterVec
	logSometimes rate.Sometimes
}

// OpenWills creates or finds the wills bucket; from now on the broker's
// wills are recorded (WillSet, WillClear). Start begins publishing lost
// nodes' wills.
func (n *Node) OpenWills(ctx context.Context, o WillOptions, reg prometheus.Registerer) (*Wills, error) {
	if o.Bucket == "" {
		o.Bucket = DefaultWillBucket
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultWillMaxBytes
	}
	if o.Queue <= 0 {
		o.Queue = DefaultWillQueue
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultWillTimeout
	}
	js, err := jetstream.New(n.Conn())
	if err != nil {
		return nil, fmt.Errorf("cluster wills: %w", err)
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "Mote: the last wills of live connections, published by a survivor if their node is lost",
		History:     1,
		MaxBytes:    o.MaxBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	}
	var kv jetstream.KeyValue
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for try := 0; ; try++ {
		actx, acancel := context.WithTimeout(cctx, 5*time.Second)
		kv, err = js.CreateOrUpdateKeyValue(actx, cfg)
		acancel()
		if err == nil {
			break
		}
		if try == 0 {
			n.log.Info("waiting for JetStream to take the wills bucket", "error", err)
		}
		select {
		case <-cctx.Done():
			return nil, fmt.Errorf("cluster wills: bucket %s (replicas %d): %w", o.Bucket, o.Replicas, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	w := &Wills{n: n, o: o, kv: kv, ops: make(chan willOp, o.Queue), stop: make(chan struct{}), done: make(chan struct{}),
		held: map[string]willHeld{}, logSometimes: rate.Sometimes{Interval: 10 * time.Second}}
	w.total = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_cluster_wills_total",
		Help: "Last wills across nodes, by result: relayed (a will published here, handed to the other nodes), recorded, record_dropped (queue full), record_failed (JetStream did not store it), cleared, clear_failed, lost_sent (a lost node's will published here), lost_reconnected (its device had reconnected: not sent), lost_denied (policy), lost_claimed_elsewhere, lost_failed."},
		[]string{"result"})
	for _, r := range []string{"relayed", "recorded", "record_dropped", "record_failed", "cleared", "clear_failed",
		"lost_sent", "lost_reconnected", "lost_denied", "lost_claimed_elsewhere", "lost_failed"} {
		w.total.WithLabelValues(r)
	}
	if reg != nil {
		if err := reg.Register(w.total); err != nil {
			return nil, fmt.Errorf("cluster wills: metrics: %w", err)
		}
	}
	go w.run()
	n.wills.Store(w)
	return w, nil
}

// Start makes pub the publisher of lost nodes' wills and publishes, in
// the background, the wills this node's id left behind in a previous run
// (killed before it could send them).
func (w *Wills) Start(pub WillPublisher) {
	w.mu.Lock()
	w.pub = pub
	w.mu.Unlock()
	w.PublishLost(w.n.opts.NodeID)
}

// WillSet records the will of a live connection (conn identifies it among
// the connections with its client id; m is the will, delay its delay in
// seconds) (broker.WillLink). It never waits: when the queue is
// full the record is dropped and counted.
func (n *Node) WillSet(conn uint64, m core.Message, delay uint32) {
	ws := n.wills.Load()
	if ws == nil || ws.closed.Load() {
		return
	}
	w := WillRecord{Node: n.opts.NodeID, ClientID: m.ClientID, Thing: m.Thing, Topic: m.Topic, Payload: m.Payload,
		QoS: m.QoS, Retain: m.Retain, Delay: delay, Properties: m.Properties}
	data, err := encodeWill(w)
	if err != nil {
		ws.total.WithLabelValues("record_failed").Inc()
		return
	}
	select {
	case ws.ops <- willOp{set: true, clientID: w.ClientID, conn: conn, rec: data}:
	default:
		ws.total.WithLabelValues("record_dropped").Inc()
		ws.logSometimes.Do(func() {
			n.log.Warn("will not recorded for node loss: the queue is full (--cluster-will-queue)", "client", w.ClientID)
		})
	}
}

// WillClear deletes the record of conn's will (its connection ended
// without a will pending, or the will was sent). A full queue is waited
// for, up to the wills' timeout: a record left behind would be sent if
// this node died.
func (n *Node) WillClear(conn uint64, clientID string) {
	ws := n.wills.Load()
	if ws == nil || ws.closed.Load() {
		return
	}
	op := willOp{clientID: clientID, conn: conn}
	select {
	case ws.ops <- op:
		return
	default:
	}
	t := time.NewTimer(ws.o.Timeout)
	defer t.Stop()
	select {
	case ws.ops <- op:
	case <-t.C:
		ws.total.WithLabelValues("clear_failed").Inc()
	case <-ws.stop:
	}
}

// willRelayed counts a will published here and handed to the other nodes.
func (n *Node) willRelayed() {
	if ws := n.wills.Load(); ws != nil {
		ws.total.WithLabelValues("relayed").Inc()
	}
}

// run writes the records, in order, one at a time.
func (w *Wills) run() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			// The broker closed first: the wills its shutdown sent
			// cleared their records; write those, within one timeout.
			ctx, cancel := context.WithTimeout(context.Background(), w.o.Timeout)
			defer cancel()
			for ctx.Err() == nil {
				select {
				case op := <-w.ops:
					w.apply(ctx, op)
				default:
					return
				}
			}
			return
		case op := <-w.ops:
			ctx, cancel := context.WithTimeout(context.Background(), w.o.Timeout)
			w.apply(ctx, op)
			cancel()
		}
	}
}

func (w *Wills) apply(ctx context.Context, op willOp) {
	key := willKey(w.n.opts.NodeID, op.clientID)
	if op.set {
		rev, err := w.kv.Put(ctx, key, op.rec)
		if err != nil {
			delete(w.held, op.clientID)
			w.total.WithLabelValues("record_failed").Inc()
			w.logSometimes.Do(func() { w.n.log.Warn("will not recorded for node loss", "client", op.clientID, "error", err) })
			return
		}
		w.held[op.clientID] = willHeld{conn: op.conn, rev: rev}
		w.total.WithLabelValues("recorded").Inc()
		return
	}
	h, ok := w.held[op.clientID]
	if !ok || h.conn != op.conn {
		return // not recorded, or a newer connection's record
	}
	delete(w.held, op.clientID)
	if err := w.kv.Delete(ctx, key, jetstream.LastRevision(h.rev)); err != nil {
		w.total.WithLabelValues("clear_failed").Inc()
		w.logSometimes.Do(func() { w.n.log.Warn("will record not deleted", "client", op.clientID, "error", err) })
		return
	}
	w.total.WithLabelValues("cleared").Inc()
}

// PublishLost publishes, in the background, the wills recorded by node
// (lost, or this node's previous run). Close waits for it.
func (w *Wills) PublishLost(node string) {
	if w.closed.Load() {
		return
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-w.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		if err := w.publishLost(ctx, node); err != nil && ctx.Err() == nil {
			w.n.log.Warn("wills of a lost node not published", "lost", node, "error", err)
		}
	}()
}

type lostWill struct {
	key string
	rev uint64
	rec WillRecord
}

func (w *Wills) publishLost(ctx context.Context, node string) error {
	start := time.Now()
	lctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	keys, err := w.kv.ListKeysFiltered(lctx, token(node, 8)+".*")
	if err != nil {
		cancel()
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil
		}
		return err
	}
	var names []string
	for k := range keys.Keys() {
		names = append(names, k)
	}
	_ = keys.Stop()
	cancel()
	var lost []lostWill
	for _, k := range names {
		gctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
		e, err := w.kv.Get(gctx, k)
		if err != nil {
			cancel()
			continue // deleted meanwhile (claimed by another survivor)
		}
		rec, err := decodeWill(e.Value())
		if err != nil || rec.Node != node {
			w.total.WithLabelValues("lost_failed").Inc()
			_ = w.kv.Delete(gctx, k, jetstream.LastRevision(e.Revision()))
			cancel()
			continue
		}
		cancel()
		lost = append(lost, lostWill{key: k, rev: e.Revision(), rec: rec})
	}
	sort.SliceStable(lost, func(i, j int) bool { return lost[i].rec.Delay < lost[j].rec.Delay })
	for _, l := range lost {
		if d := min(time.Duration(l.rec.Delay)*time.Second, MaxWillDelay) - time.Since(start); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		w.publishOne(ctx, l)
	}
	return nil
}

func (w *Wills) publishOne(ctx context.Context, l lostWill) {
	ctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	defer cancel()
	// Claim: of the nodes that read this revision, one deletes it.
	if err := w.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev)); err != nil {
		w.total.WithLabelValues("lost_claimed_elsewhere").Inc()
		return
	}
	if _, held, err := w.n.ClientOwner(ctx, l.rec.ClientID, l.rec.Thing); err == nil && held {
		w.total.WithLabelValues("lost_reconnected").Inc()
		return
	}
	w.mu.Lock()
	pub := w.pub
	w.mu.Unlock()
	if pub == nil {
		w.total.WithLabelValues("lost_failed").Inc()
		return
	}
	err := pub.PublishWill(ctx, core.Message{
		Topic: l.rec.Topic, Payload: l.rec.Payload, QoS: l.rec.QoS, Retain: l.rec.Retain,
		ClientID: l.rec.ClientID, Thing: l.rec.Thing, Received: time.Now(), Protocol: ProtocolWill,
		Properties: l.rec.Properties,
	})
	switch {
	case err == nil:
		w.total.WithLabelValues("lost_sent").Inc()
	case core.KindOf(err) == core.KindForbidden || core.KindOf(err) == core.KindNotFound:
		w.total.WithLabelValues("lost_denied").Inc()
	default:
		w.total.WithLabelValues("lost_failed").Inc()
		w.logSometimes.Do(func() {
			w.n.log.Warn("will of a lost connection not published", "client", l.rec.ClientID, "thing", l.rec.Thing, "error", err)
		})
	}
}

// Close stops recording, after writing what is queued within one
// timeout (what is left stays in the bucket: a node starting under this
// id publishes it), and waits for the lost nodes' wills being published.
func (w *Wills) Close() error {
	w.closeOnce.Do(func() {
		w.closed.Store(true)
		w.n.wills.CompareAndSwap(w, nil)
		close(w.stop)
		<-w.done
		w.wg.Wait()
	})
	return nil
}

var _ interface {
	WillSet(uint64, core.Message, uint32)
	WillClear(uint64, string)
} = (*Node)(nil)
