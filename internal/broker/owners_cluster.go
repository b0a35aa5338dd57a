package broker

import (
	"context"
	"errors"
)

// Client ids across the nodes of a cluster (docs/cluster.md, "A client id
// belongs to its thing"; cluster/owners.go). On one node a connection of
// another thing under a client id in use is refused (ownership.go); in a
// cluster the connection holding the id may be on another node, and
// nothing of a clean one is in the store. So before accepting a connection
// under an id that neither this node nor the store knows, the broker asks
// the cluster which thing holds it (one NATS request, bounded by
// HandoverTimeout): another thing's refuses the connection (0x85, MQTT
// 3.1.1 return code 2), counted and logged as on one node. A persistent
// session in the store already answers the question (clusterSession), so
// a connect asks NATS at most once: for the lookup or for the handover.

// OwnerLink is what the broker needs of the cluster to find the thing
// holding a client id on another node (implemented by *cluster.Node). A
// ClusterLink that does not implement it leaves client ids node-local.
type OwnerLink interface {
	// ClientOwnerSession returns the thing whose live connection holds
	// clientID on some node (held false: none, or no answer until ctx
	// ended), and that node when the connection has a persistent session
	// ("" otherwise).
	ClientOwnerSession(ctx context.Context, clientID, thing string) (owner, node string, held bool, err error)
	// ClientDisconnected hears that a connection established here (told
	// with ClientConnected) ended.
	ClientDisconnected(clientID string)
}

// errClusterBusy refuses a connection whose client id cannot be looked up
// now (too many lookups at once): 0x89 server busy, 3.1.1 return code 3.
var errClusterBusy = errors.New("too many client id lookups in the cluster at once")

// clusterOwner refuses a connection of thing under clientID when a live
// connection of another thing holds the id on another node. A live
// connection of the same thing with a persistent session returns its
// node: the session was perhaps created less than one flush ago and is
// not in the store yet, so it is handed over from there (handover.go).
func (b *Broker) clusterOwner(clientID, thing string) (holder string, err error) {
	if b.owner == nil {
		return "", nil
	}
	if _, ok := b.server.Clients.Get(clientID); ok {
		return "", nil // held here: ownership.go decides
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.HandoverTimeout)
	defer cancel()
	owner, node, held, err := b.owner.ClientOwnerSession(ctx, clientID, thing)
	switch {
	case err != nil:
		return "", errClusterBusy
	case held && owner != thing:
		return "", errClientIDOwned
	case held && node != b.opts.NodeID:
		return node, nil
	}
	return "", nil
}

// ClientThing returns the thing whose connection or session holds
// clientID on this node (cluster.ClientOwners).
func (b *Broker) ClientThing(clientID string) (string, bool) {
	if v, ok := b.sessions.Load(clientID); ok {
		if s := v.(*session); s.prov == nil && s.id.Thing != "" {
			return s.id.Thing, true
		}
	}
	o := &b.owners
	o.mu.Lock()
	defer o.mu.Unlock()
	if c, ok := o.m[clientID]; ok && c.thing != "" && b.claimHeld(clientID, c) {
		return c.thing, true
	}
	return "", false
}

// ClientSession is ClientThing that also says whether the connection
// holding clientID here has a persistent session (cluster.ClientOwners).
func (b *Broker) ClientSession(clientID string) (thing string, persistentSession, ok bool) {
	thing, ok = b.ClientThing(clientID)
	if !ok {
		return "", false, false
	}
	if v, live := b.sessions.Load(clientID); live {
		return thing, b.handover != nil && persistent(v.(*session).cl), true
	}
	return thing, false, true
}

// clusterDisconnected tells the cluster that a connection it was told of
// (clusterConnected) ended.
func (b *Broker) clusterDisconnected(s *session) {
	if b.owner != nil && s.prov == nil {
		b.owner.ClientDisconnected(s.cl.ID)
	}
}
