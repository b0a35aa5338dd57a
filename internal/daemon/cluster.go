package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/broker"
	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/cluster"
	"github.com/moteiot/mote/internal/commands"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/shadow"
)

// startBus creates the bus of the platform services: in-process for one
// node alone; with --cluster, a cluster node that also relays every
// accepted message to the other nodes over NATS (docs/cluster.md). It is
// closed after the broker (closers run in reverse).
func (d *Daemon) startBus() error {
	cfg := d.cfg
	if cfg.Cluster == "" {
		d.bus = &bus.Local{}
		return nil
	}
	n, err := cluster.Connect(cluster.Options{
		URL:             cfg.Cluster,
		NodeID:          cfg.NodeID,
		TLSCA:           cfg.ClusterTLSCA,
		Creds:           cfg.ClusterCreds,
		User:            cfg.ClusterUser,
		Password:        cfg.ClusterPassword,
		RelayQueue:      cfg.ClusterRelayQueue,
		HandoverTimeout: cfg.ClusterHandoverTimeout,
		OwnerLookups:    cfg.ClusterClientIDLookups,
		Logger:          d.log,
		Metrics:         d.metrics,
	})
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	d.cluster = n
	d.bus = n
	d.onClose(n.Close)
	return nil
}

// clusterLink is what the broker tells the other nodes through: nil
// (an untyped nil interface) for one node alone.
func (d *Daemon) clusterLink() broker.ClusterLink {
	if d.cluster == nil {
		return nil
	}
	return d.cluster
}

// startCluster starts relaying the other nodes' messages into the broker,
// and their device-directed work to this node's services.
func (d *Daemon) startCluster() error {
	if d.cluster == nil {
		return nil
	}
	w := remoteWork{commands: d.commands, shadows: d.shadows}
	if err := d.cluster.Start(d.broker, w.handle); err != nil {
		return err
	}
	if err := d.startRelay(); err != nil { // relay.go
		return err
	}
	d.startWills() // wills.go
	// Commands queued on other nodes, announced at once on core NATS
	// (besides their relayed queued event; internal/cluster/commands.go).
	if err := d.cluster.OnCommandQueued(d.commands.QueuedElsewhere); err != nil {
		return err
	}
	// Device results other nodes accepted, applied here too: a node
	// killed between a result's PUBACK and its store write loses nothing.
	// Detached before the service closes (closers run in reverse).
	detachResults := d.commands.AttachRemote(d.cluster.Relayed())
	d.onClose(func() error { detachResults(); return nil })
	// Direct method calls other nodes route to this node's devices
	// (clusterwork.go).
	if err := d.routes.Serve(d.methods); err != nil {
		return err
	}
	// The per-thing rate limits, shared approximately with the other
	// nodes (stopped before the broker closes).
	if d.cfg.DeviceRateLimit > 0 {
		stop, err := d.cluster.ShareRateUsage(d.broker, 0, d.metrics)
		if err != nil {
			return err
		}
		d.onClose(stop)
	}
	// Registry changes made on one node act on the connections of every
	// node: a thing disabled or deleted, a credential revoked, a policy
	// changed.
	if err := d.cluster.OnControl(d.onRemoteRegistry); err != nil {
		return err
	}
	d.registry.Listen(d.announceRegistry)
	// Leases: a node not heard for --cluster-lease-timeout is lost; a
	// survivor marks its things disconnected (internal/cluster/lease.go)
	// and one survivor adopts its ingest backlog (adopt.go).
	adopter, err := d.newAdopter()
	if err != nil {
		return err
	}
	lease, err := d.cluster.StartLease(cluster.LeaseOptions{
		Interval: d.cfg.ClusterLeaseInterval,
		Timeout:  d.cfg.ClusterLeaseTimeout,
		Store:    d.store.Things(),
		Lost:     d.broker.NodeLost,
		Gone:     func(node string) { d.nodeGone(adopter, node) }, // wills.go
		Rejoined: d.broker.RecordConnections,
	})
	if err != nil {
		if adopter != nil {
			_ = adopter.Close()
		}
		return err
	}
	d.onClose(lease.Close)
	if adopter != nil {
		// Closed before the lease, the rules engine and the NATS
		// connection: what the adoptions handed over is flushed and purged.
		adopter.Start(lease.Alive)
		d.onClose(adopter.Close)
	}
	return nil
}

// registryEvent is a registry.Event on the wire between nodes.
type registryEvent struct {
	Kind       registry.EventKind `json:"kind"`
	Thing      string             `json:"thing,omitempty"`
	Enabled    bool               `json:"enabled,omitempty"`
	Credential string             `json:"credential,omitempty"`
	Expires    time.Time          `json:"expires"` // CredentialRotated
}

// announceRegistry tells the other nodes about a registry change made here.
func (d *Daemon) announceRegistry(e registry.Event) {
	switch e.Kind {
	case registry.ThingChanged, registry.ThingDeleted, registry.CredentialRevoked, registry.PoliciesChanged,
		registry.CredentialRotated:
	default:
		return
	}
	b, err := json.Marshal(registryEvent{Kind: e.Kind, Thing: e.Thing, Enabled: e.Enabled, Credential: e.Credential, Expires: e.Expires})
	if err == nil {
		d.cluster.Announce(b)
	}
}

// onRemoteRegistry applies another node's registry change to this node's
// connections and caches, as onRegistryEvent does for a local one (jobs
// and files follow the change on the node that made it).
func (d *Daemon) onRemoteRegistry(data []byte) {
	var e registryEvent
	if json.Unmarshal(data, &e) != nil {
		return
	}
	d.applyToConnections(registry.Event{Kind: e.Kind, Thing: e.Thing, Enabled: e.Enabled, Credential: e.Credential, Expires: e.Expires})
}

// resetPresence marks things disconnected at start: every thing for one
// node alone; in a cluster, the other nodes' devices are connected, so
// only the things this node had are reset.
func (d *Daemon) resetPresence(ctx context.Context) error {
	if d.cfg.Cluster != "" {
		// Only this node's own things: a restart ended their connections.
		_, err := d.store.Things().ResetNodePresence(ctx, d.cfg.NodeID)
		return err
	}
	return d.store.Things().ResetPresence(ctx)
}

// remoteWork is what a platform message from another node means for this
// node's services. It runs on the relay's delivery goroutine and only
// enqueues.
type remoteWork struct {
	commands *commands.Service
	shadows  *shadow.Service
}

func (w remoteWork) handle(m core.Message) {
	switch {
	case strings.HasPrefix(m.Topic, "$mote/events/commands/"):
		// A command queued on another node: if its device is connected
		// here, this node delivers it.
		rest := strings.TrimPrefix(m.Topic, "$mote/events/commands/")
		thing, _, ok := strings.Cut(rest, "/")
		if !ok || thing == "" {
			return
		}
		var e struct {
			Event string `json:"event"`
		}
		if json.Unmarshal(m.Payload, &e) == nil && e.Event == "queued" {
			w.commands.Subscribed(thing, []string{commands.Topic(thing, "+")})
		}
	default:
		// A shadow another node changed: the cached copy here is stale.
		if thing, ok := shadowAnswer(m.Topic); ok {
			w.shadows.ForgetThing(thing)
		}
	}
}

// shadowAnswer returns the thing of a shadow service answer that follows a
// change ({prefix}{thing}/shadow/.../{update|delete}/accepted).
func shadowAnswer(topic string) (string, bool) {
	for _, p := range []string{shadow.MotePrefix, shadow.AWSPrefix} {
		rest, ok := strings.CutPrefix(topic, p)
		if !ok {
			continue
		}
		thing, rest, ok := strings.Cut(rest, "/")
		if !ok || thing == "" || !strings.HasPrefix(rest, "shadow/") {
			return "", false
		}
		if strings.HasSuffix(rest, "/update/accepted") || strings.HasSuffix(rest, "/delete/accepted") {
			return thing, true
		}
		return "", false
	}
	return "", false
}
