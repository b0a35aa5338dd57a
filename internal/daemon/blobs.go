package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/moteiot/mote/internal/artifacts"
	"github.com/moteiot/mote/internal/blob"
	"github.com/moteiot/mote/internal/blob/fsblob"
	"github.com/moteiot/mote/internal/blob/natsblob"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/files"
	"github.com/moteiot/mote/internal/jobs"
)

// openBlobs opens the blob store: the data directory's blobs/ for one
// node alone; in a cluster, the JetStream object store bucket "mote-blobs"
// on the node's NATS connection, with --cluster-replicas replicas, so an
// artifact or file uploaded through one node downloads through any.
func (d *Daemon) openBlobs(ctx context.Context) (blob.Store, error) {
	if d.cluster == nil {
		return fsblob.Open(datadir.Blobs(d.cfg.DataDir))
	}
	return natsblob.Open(ctx, natsblob.Options{
		Conn:     d.cluster.Conn(),
		Replicas: d.cfg.ClusterReplicas,
		Timeout:  30 * time.Second, // setting up the bucket while JetStream elects its leaders, reading metadata
	})
}

// startBlobs opens the blob store (openBlobs) and creates the
// artifact and file services on it (docs/artifacts.md, docs/files.md).
// An artifact is in use while a job in progress names it (read from the
// job store: the job service is created after this one).
func (d *Daemon) startBlobs(ctx context.Context) error {
	cfg := d.cfg
	bs, err := d.openBlobs(ctx)
	if err != nil {
		return fmt.Errorf("blob store: %w", err)
	}
	d.blobs = bs
	d.onClose(bs.Close)

	urlKey, err := artifacts.LoadOrCreateURLKey(datadir.ArtifactURLKey(cfg.DataDir))
	if err != nil {
		return err
	}
	signer, err := artifacts.NewURLSigner(urlKey)
	if err != nil {
		return err
	}
	var keys []artifacts.SigningKey
	if cfg.ArtifactSigningKeys != "" {
		if keys, err = artifacts.LoadSigningKeys(cfg.ArtifactSigningKeys); err != nil {
			return fmt.Errorf("--artifact-signing-keys: %w", err)
		}
	}
	d.artifacts, err = artifacts.New(artifacts.Options{
		Store:            d.store.Artifacts(),
		Blobs:            bs,
		Signer:           signer,
		SigningKeys:      keys,
		RequireSignature: len(keys) > 0,
		MaxSize:          cfg.ArtifactMaxSize,
		URLTTL:           cfg.ArtifactURLTTL,
		URLBase:          cfg.ArtifactURLBase,
		InUse:            jobs.ArtifactUse{Store: d.store.Jobs()},
		Logger:           d.log.With("component", "artifacts"),
		Metrics:          d.metrics,
	})
	if err != nil {
		return err
	}
	// Blobs a crash left between the blob and its row.
	if n, err := d.artifacts.Sweep(ctx, time.Hour); err != nil {
		d.log.Warn("artifacts: sweep of orphan blobs failed", "error", err)
	} else if n > 0 {
		d.log.Info("artifacts: removed orphan blobs", "count", n)
	}

	fileKey, err := files.LoadOrCreateKey(datadir.FilesKey(cfg.DataDir))
	if err != nil {
		return err
	}
	d.files, err = files.New(files.Options{
		Store:         d.store.Files(),
		Blobs:         bs,
		Key:           fileKey,
		MaxFileSize:   cfg.FileMaxSize,
		QuotaPerThing: cfg.FileQuotaPerThing,
		MaxFiles:      cfg.FileMaxCount,
		Events:        d.broker,
		Bus:           d.bus,
		Logger:        d.log.With("component", "files"),
		Metrics:       d.metrics,
	})
	if err != nil {
		return err
	}
	d.files.Start()
	d.onClose(d.files.Close)
	return nil
}

// Artifacts returns the firmware artifact service.
func (d *Daemon) Artifacts() *artifacts.Service { return d.artifacts }

// Files returns the device file service.
func (d *Daemon) Files() *files.Service { return d.files }
