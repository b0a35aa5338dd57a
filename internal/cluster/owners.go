package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/core"
)

// Client id owners across nodes (docs/cluster.md, "A client id belongs to
// its thing"). A client id used by a live connection belongs to that
// connection's thing on every node: a connection of another thing with it
// is refused (0x85), as on one node.
//
// A node subscribes, for each client id connected here, to
// "<prefix>.ctl.cid.<token>", the token being the first 16 bytes of the
// id's SHA-256 in hex (any client id, whatever its characters, is one
// subject token). A node about to accept a connection under a client id
// that neither it nor the store knows asks that subject (one NATS request,
// bounded by the handover timeout): NATS answers "no responders" at once
// when no node holds the id (accept), the holder answers with its thing
// (another thing: refuse 0x85; the same thing: accept, and the takeover
// announcement closes the old connection with 0x8E). A holder that does
// not answer within the deadline (hung) lets the connection in. The
// subscriptions of all ids share one channel and one goroutine.
//
// The request is the takeover announcement's form ("1", the asking node,
// NUL, the client id); the answer "1", then 'H' and the holder's thing,
// 'P', the holder's node, NUL and its thing when the connection has a
// persistent session (perhaps created less than one flush ago, so not in
// the store: the asking node has it handed over, broker/handover.go), or
// 'N' (not held here any more).

// ClientOwners is the broker's side of the lookup (*broker.Broker); a
// Broker that does not implement it answers "not held".
type ClientOwners interface {
	// ClientThing returns the thing whose connection (or session) holds
	// clientID here.
	ClientThing(clientID string) (thing string, ok bool)
}

// ClientSessions is ClientOwners that also tells whether the connection
// has a persistent session (*broker.Broker).
type ClientSessions interface {
	ClientSession(clientID string) (thing string, persistent, ok bool)
}

// DefaultOwnerLookups bounds the lookups a node makes at once when
// Options.OwnerLookups is zero.
const DefaultOwnerLookups = 256

// ErrOwnerLookupsBusy is returned by ClientOwner when OwnerLookups lookups
// are already waiting for their answer.
var ErrOwnerLookupsBusy = core.Errorf(core.KindUnavailable, "cluster: too many client id lookups at once")

type ownerState struct {
	mu   sync.Mutex
	subs map[string]*ownerSub // client id → its subscription here
	ch   chan *nats.Msg       // requests for every id held here
	sem  chan struct{}        // lookups in progress (OwnerLookups)
	done chan struct{}        // closed by Close

	free, same, other, timeout, busy atomic.Uint64 // lookups made here, by result
	answered, decodeFailed           atomic.Uint64
}

type ownerSub struct {
	sub  *nats.Subscription
	refs int // established connections under the id here
}

func (n *Node) ownerSubject(clientID string) string {
	sum := sha256.Sum256([]byte(clientID))
	return n.opts.Prefix + ".ctl.cid." + hex.EncodeToString(sum[:16])
}

func (n *Node) initOwners() {
	o := &n.owners
	o.subs = map[string]*ownerSub{}
	o.ch = make(chan *nats.Msg, n.opts.RelayQueue)
	o.sem = make(chan struct{}, n.opts.OwnerLookups)
	o.done = make(chan struct{})
}

// serveOwners answers the other nodes' lookups of the ids held here until
// Close.
func (n *Node) serveOwners(b Broker) {
	owners, _ := b.(ClientOwners)
	sessions, _ := b.(ClientSessions)
	o := &n.owners
	for {
		select {
		case <-o.done:
			return
		case msg := <-o.ch:
			_, clientID, err := parseTakeover(msg.Data)
			if err != nil {
				o.decodeFailed.Add(1)
				continue
			}
			var answer []byte
			if sessions != nil {
				if thing, persistent, ok := sessions.ClientSession(clientID); ok && persistent {
					answer = appendOwnerSession(nil, n.opts.NodeID, thing)
				}
			}
			if answer == nil && owners != nil {
				if thing, ok := owners.ClientThing(clientID); ok {
					answer = appendOwner(nil, thing, true)
				}
			}
			if answer == nil {
				answer = appendOwner(nil, "", false)
			}
			if msg.Respond(answer) == nil {
				o.answered.Add(1)
			}
		}
	}
}

// holdClientID makes this node answer lookups of clientID (a connection
// under it was established here). It never waits for the network.
func (n *Node) holdClientID(clientID string) {
	o := &n.owners
	o.mu.Lock()
	defer o.mu.Unlock()
	if n.closed.Load() {
		return
	}
	if s, ok := o.subs[clientID]; ok {
		s.refs++
		return
	}
	sub, err := n.nb.Conn().ChanSubscribe(n.ownerSubject(clientID), o.ch)
	if err != nil {
		n.announceFailed.Add(1)
		return
	}
	o.subs[clientID] = &ownerSub{sub: sub, refs: 1}
}

// ClientDisconnected tells the cluster that a connection established here
// under clientID ended (broker.OwnerLink): once none is left, this node
// stops answering lookups of it.
func (n *Node) ClientDisconnected(clientID string) {
	o := &n.owners
	o.mu.Lock()
	defer o.mu.Unlock()
	s, ok := o.subs[clientID]
	if !ok {
		return
	}
	if s.refs--; s.refs > 0 {
		return
	}
	delete(o.subs, clientID)
	_ = s.sub.Unsubscribe()
}

// ClientOwner asks the cluster which thing holds a live connection under
// clientID (broker.OwnerLink), for a connection of thing, waiting until
// ctx ends. held is false when
// no node holds it, and also when the holder did not answer in time (a
// hung node: the connection is let in). It returns ErrOwnerLookupsBusy,
// without asking, when OwnerLookups lookups are in progress.
func (n *Node) ClientOwner(ctx context.Context, clientID, thing string) (owner string, held bool, err error) {
	owner, _, held, err = n.ClientOwnerSession(ctx, clientID, thing)
	return owner, held, err
}

// ClientOwnerSession is ClientOwner that also returns the holder's node
// when its connection has a persistent session ("" otherwise;
// broker.OwnerLink).
func (n *Node) ClientOwnerSession(ctx context.Context, clientID, thing string) (owner, node string, held bool, err error) {
	o := &n.owners
	if n.closed.Load() {
		return "", "", false, core.Errorf(core.KindUnavailable, "cluster: closed")
	}
	select {
	case o.sem <- struct{}{}:
	default:
		o.busy.Add(1)
		return "", "", false, ErrOwnerLookupsBusy
	}
	defer func() { <-o.sem }()
	msg, err := n.nb.Conn().RequestWithContext(ctx, n.ownerSubject(clientID), appendTakeover(nil, n.opts.NodeID, clientID))
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			o.free.Add(1)
		} else {
			o.timeout.Add(1)
		}
		return "", "", false, nil
	}
	owner, node, held, err = parseOwner(msg.Data)
	switch {
	case err != nil:
		o.decodeFailed.Add(1)
		o.timeout.Add(1)
		return "", "", false, nil
	case !held:
		o.free.Add(1)
	case owner == thing:
		o.same.Add(1)
	default:
		o.other.Add(1)
	}
	return owner, node, held, nil
}

// appendOwner encodes a lookup's answer: "1", then 'H' and the thing, or
// 'N'.
func appendOwner(dst []byte, thing string, held bool) []byte {
	dst = append(dst, '1')
	if !held {
		return append(dst, 'N')
	}
	dst = append(dst, 'H')
	return append(dst, thing...)
}

// appendOwnerSession encodes the answer of a holder whose connection has
// a persistent session: "1", 'P', the node, NUL, the thing.
func appendOwnerSession(dst []byte, node, thing string) []byte {
	dst = append(dst, '1', 'P')
	dst = append(dst, node...)
	dst = append(dst, 0)
	return append(dst, thing...)
}

func parseOwner(data []byte) (thing, node string, held bool, err error) {
	if len(data) < 2 || data[0] != '1' {
		return "", "", false, errors.New("cluster: owner: unknown version")
	}
	switch data[1] {
	case 'N':
		if len(data) != 2 {
			return "", "", false, errors.New("cluster: owner: malformed")
		}
		return "", "", false, nil
	case 'H':
		if len(data) == 2 {
			return "", "", false, errors.New("cluster: owner: no thing")
		}
		return string(data[2:]), "", true, nil
	case 'P':
		node, thing, ok := strings.Cut(string(data[2:]), "\x00")
		if !ok || node == "" || thing == "" {
			return "", "", false, errors.New("cluster: owner: malformed session holder")
		}
		return thing, node, true, nil
	default:
		return "", "", false, errors.New("cluster: owner: malformed")
	}
}

// closeOwners drops the subscriptions and stops serveOwners.
func (n *Node) closeOwners() {
	o := &n.owners
	o.mu.Lock()
	defer o.mu.Unlock()
	for id, s := range o.subs {
		_ = s.sub.Unsubscribe()
		delete(o.subs, id)
	}
	if o.done != nil {
		select {
		case <-o.done:
		default:
			close(o.done)
		}
	}
}

func (n *Node) registerOwners(reg prometheus.Registerer) error {
	counter := func(name, help string, labels prometheus.Labels, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	const help = "Client ids this node asked the cluster about before accepting a connection, by result: free (no node holds it), same_thing (held by the connecting thing on another node: taken over), other_thing (held by another thing: refused 0x85), timeout (no answer within --cluster-handover-timeout: accepted), busy (beyond --cluster-client-id-lookups at once: refused 0x89)."
	o := &n.owners
	for _, c := range []prometheus.Collector{
		counter("mote_cluster_client_id_lookups_total", help, prometheus.Labels{"result": "free"}, &o.free),
		counter("mote_cluster_client_id_lookups_total", help, prometheus.Labels{"result": "same_thing"}, &o.same),
		counter("mote_cluster_client_id_lookups_total", help, prometheus.Labels{"result": "other_thing"}, &o.other),
		counter("mote_cluster_client_id_lookups_total", help, prometheus.Labels{"result": "timeout"}, &o.timeout),
		counter("mote_cluster_client_id_lookups_total", help, prometheus.Labels{"result": "busy"}, &o.busy),
		counter("mote_cluster_client_id_lookups_answered_total", "Lookups of client ids held here that this node answered for another node.", nil, &o.answered),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
