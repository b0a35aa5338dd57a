package daemon

import (
	"context"
	"fmt"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/broker"
	"github.com/moteiot/mote/internal/provisioning"
	"github.com/moteiot/mote/internal/seal"
)

// startProvisioning makes the provisioning service (docs/provisioning.md)
// once the shadows it writes initial desired states to exist, and hands it
// to the broker (provisioning connections, JITR) before the broker
// serves. It has no goroutines of its own: nothing to stop.
func (d *Daemon) startProvisioning(ctx context.Context, hasher *auth.Hasher, sealer *seal.Box) error {
	cfg := d.cfg
	d.prov = provisioning.New(provisioning.Options{
		Store:                  d.store,
		Registry:               d.registry,
		Sealer:                 sealer,
		Hasher:                 hasher,
		Shadows:                d.shadows,
		CA:                     d.ca,
		Trust:                  d.trust,
		VerificationTTL:        cfg.ProvisioningVerificationTTL,
		MaxEnrollments:         cfg.ProvisioningMaxEnrollments,
		MaxPendingCertificates: cfg.ProvisioningMaxPendingCerts,
		PendingTTL:             cfg.ProvisioningPendingTTL,
		ClaimTTL:               cfg.ProvisioningClaimTTL,
		MaxClaimTTL:            cfg.ProvisioningMaxClaimTTL,
		RequestTimeout:         cfg.ProvisioningRequestTimeout,
		Audit:                  d.audit,
		Logger:                 broker.Throttled(d.log.With("component", "provisioning"), 20, 10e9),
		Metrics:                d.metrics,
	})
	if err := d.prov.Start(ctx); err != nil {
		return fmt.Errorf("provisioning: %w", err)
	}
	d.provLimit = provisioning.NewLimiter(cfg.ProvisioningRateLimit, cfg.ProvisioningRateBurst, d.metrics)
	d.broker.SetProvisioner(provisioning.MQTT{S: d.prov, Limiter: d.provLimit})
	return nil
}

// Provisioning returns the provisioning service.
func (d *Daemon) Provisioning() *provisioning.Service { return d.prov }
