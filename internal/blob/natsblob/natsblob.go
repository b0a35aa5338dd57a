// Package natsblob is the blob.Store of a cluster: a NATS JetStream object
// store (nats.go's jetstream package), which every node reaches over the
// NATS connection the cluster already has for its bus.
//
// JetStream splits an object into chunk messages and publishes its meta
// message (size, SHA-256) last, so an object is visible only once whole;
// a Put whose reader fails purges the chunks it sent. A read checks the
// SHA-256 at the end of the object (jetstream.ErrDigestMismatch becomes
// blob.ErrCorrupt). A ranged read streams the chunks from the start and
// discards those before offset: the cost of a resumed download grows with
// its offset (the object store has no seek).
package natsblob

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/moteiot/mote/internal/blob"
	"github.com/moteiot/mote/internal/core"
)

var _ blob.Store = (*Store)(nil)

// Options configure Open.
type Options struct {
	Conn     *nats.Conn // required; the caller closes it
	Bucket   string     // "" means "mote-blobs"
	Replicas int        // 0 means 1
	// MaxBytes bounds the bucket (0: no bound); a Put past it fails with
	// core.KindInsufficientStorage.
	MaxBytes int64
	// Timeout bounds the calls that set up the bucket and read metadata
	// (0: 10s).
	Timeout time.Duration
}

// Store is a blob.Store on a JetStream object store bucket.
type Store struct {
	obs     jetstream.ObjectStore
	timeout time.Duration
}

// Open creates the bucket if it does not exist (or updates its settings).
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Conn == nil {
		return nil, errors.New("natsblob: no NATS connection")
	}
	if o.Bucket == "" {
		o.Bucket = "mote-blobs"
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, fmt.Errorf("natsblob: jetstream: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	obs, err := js.CreateOrUpdateObjectStore(cctx, jetstream.ObjectStoreConfig{
		Bucket:      o.Bucket,
		Description: "Mote blobs: firmware artifacts and device files",
		Replicas:    o.Replicas,
		MaxBytes:    o.MaxBytes,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("natsblob: bucket %s: %w", o.Bucket, err)
	}
	// An object store's stream answers reads from any replica ("direct
	// get"), and a follower may not have an object stored a moment ago
	// yet: uploaded through node A, it was not found through node C
	// (TestCluster). Reads go to the stream's leader instead; the handle
	// is opened again to see the change.
	st, err := js.Stream(cctx, "OBJ_"+o.Bucket)
	if err != nil {
		return nil, fmt.Errorf("natsblob: bucket %s: %w", o.Bucket, err)
	}
	if cfg := st.CachedInfo().Config; cfg.AllowDirect {
		cfg.AllowDirect = false
		if _, err := js.UpdateStream(cctx, cfg); err != nil {
			return nil, fmt.Errorf("natsblob: bucket %s: reads from the leader: %w", o.Bucket, err)
		}
		if obs, err = js.ObjectStore(cctx, o.Bucket); err != nil {
			return nil, fmt.Errorf("natsblob: bucket %s: %w", o.Bucket, err)
		}
	}
	return &Store{obs: obs, timeout: o.Timeout}, nil
}

func toInfo(key string, oi *jetstream.ObjectInfo) blob.Info {
	info := blob.Info{Key: key, Size: int64(oi.Size), Created: oi.ModTime.UTC().Truncate(time.Millisecond)}
	if sum, err := jetstream.DecodeObjectDigest(oi.Digest); err == nil {
		info.SHA256 = hex.EncodeToString(sum)
	}
	return info
}

func mapErr(key string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return core.Errorf(core.KindNotFound, "blob %q not found", key)
	case errors.Is(err, jetstream.ErrDigestMismatch):
		return fmt.Errorf("%w: %s: %v", blob.ErrCorrupt, key, err)
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrTimeout):
		return &core.Error{Kind: core.KindUnavailable, Msg: "blob store (NATS) unavailable", Err: err}
	}
	if strings.Contains(err.Error(), "maximum bytes exceeded") || strings.Contains(err.Error(), "insufficient resources") {
		return &core.Error{Kind: core.KindInsufficientStorage, Msg: "blob store (NATS) is full", Err: err}
	}
	return err
}

// Put streams r into the bucket.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, max int64) (blob.Info, error) {
	if err := blob.ValidKey(key); err != nil {
		return blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, err
	}
	oi, err := s.obs.Put(ctx, jetstream.ObjectMeta{Name: key}, blob.LimitReader(blob.ContextReader(ctx, r), max))
	if err != nil {
		if core.KindOf(err) == core.KindTooLarge {
			return blob.Info{}, err
		}
		return blob.Info{}, mapErr(key, err)
	}
	return toInfo(key, oi), nil
}

// Get streams a range of an object.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := blob.ValidKey(key); err != nil {
		return nil, err
	}
	res, err := s.obs.Get(ctx, key)
	if err != nil {
		return nil, mapErr(key, err)
	}
	oi, err := res.Info()
	if err != nil {
		res.Close()
		return nil, mapErr(key, err)
	}
	size := int64(oi.Size)
	if offset < 0 || offset > size {
		res.Close()
		return nil, core.Errorf(core.KindInvalid, "offset %d is outside the object (%d bytes)", offset, size)
	}
	if offset > 0 {
		if _, err := io.CopyN(io.Discard, res, offset); err != nil {
			res.Close()
			return nil, mapErr(key, err)
		}
	}
	var r io.Reader = &errMapper{key: key, r: res}
	if length >= 0 && offset+length < size {
		r = io.LimitReader(r, length)
	}
	return &readCloser{Reader: r, c: res}, nil
}

type errMapper struct {
	key string
	r   io.Reader
}

func (e *errMapper) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		err = mapErr(e.key, err)
	}
	return n, err
}

type readCloser struct {
	io.Reader
	c io.Closer
}

func (r *readCloser) Close() error { return r.c.Close() }

// Stat returns an object's Info.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := blob.ValidKey(key); err != nil {
		return blob.Info{}, err
	}
	oi, err := s.obs.GetInfo(ctx, key)
	if err != nil {
		return blob.Info{}, mapErr(key, err)
	}
	return toInfo(key, oi), nil
}

// Delete removes an object (its chunks are purged).
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidKey(key); err != nil {
		return err
	}
	if err := s.obs.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return mapErr(key, err)
	}
	return nil
}

// List returns the objects whose key starts with prefix. The object store
// lists the whole bucket; the prefix is applied here.
func (s *Store) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	l, err := s.obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, mapErr(prefix, err)
	}
	var out []blob.Info
	for _, oi := range l {
		if strings.HasPrefix(oi.Name, prefix) {
			out = append(out, toInfo(oi.Name, oi))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Close does nothing: the connection belongs to the caller.
func (s *Store) Close() error { return nil }
