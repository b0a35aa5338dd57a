// Package artifacts keeps firmware artifacts for over-the-air updates
// (issue 13): named, versioned binaries uploaded by operators, stored in
// the blob store (internal/blob) with their metadata — size, SHA-256, an
// optional ed25519 signature — in store.ArtifactStore, and downloaded by
// devices with their own credentials or with a short-lived signed URL
// that a job document embeds (Expand).
//
// An upload streams: the body goes straight into the blob store, hashed
// on the way, and only then are the expected SHA-256 and the signature
// checked; an artifact that fails a check is deleted before the row is
// written, so nothing half-checked is ever visible. The signature is
// ed25519 over the 32 raw bytes of the content's SHA-256 (so it can be
// checked without holding the file), verified against the public keys
// configured on the server.
//
// An artifact a job uses is not deleted: the jobs package implements
// InUse; until it exists the daemon wires NoJobs.
package artifacts

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/moteiot/mote/internal/blob"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// InUse tells whether a job still uses an artifact version. The jobs
// package implements it.
type InUse interface {
	// ArtifactInUse returns the name of a job that uses name@version
	// ("" when none does).
	ArtifactInUse(ctx context.Context, name, version string) (job string, err error)
}

// NoJobs is the InUse of a server without a jobs component: no
// artifact is ever in use.
type NoJobs struct{}

// ArtifactInUse reports that no job uses the artifact.
func (NoJobs) ArtifactInUse(context.Context, string, string) (string, error) { return "", nil }

// SigningKey is a public key that may sign artifacts.
type SigningKey struct {
	ID  string // first 16 hex digits of the SHA-256 of the key
	Key ed25519.PublicKey
}

// LoadSigningKeys reads ed25519 public keys from a PEM file ("PUBLIC KEY"
// blocks, as `openssl pkey -pubout` writes them).
func LoadSigningKeys(path string) ([]SigningKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("artifact signing keys: %w", err)
	}
	var keys []SigningKey
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("artifact signing keys %s: unexpected PEM block %q (want PUBLIC KEY)", path, blk.Type)
		}
		pk, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("artifact signing keys %s: %w", path, err)
		}
		ek, ok := pk.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("artifact signing keys %s: a %T key; only ed25519 is accepted", path, pk)
		}
		keys = append(keys, NewSigningKey(ek))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("artifact signing keys %s: no PUBLIC KEY block", path)
	}
	return keys, nil
}

// NewSigningKey names a key by its digest.
func NewSigningKey(k ed25519.PublicKey) SigningKey {
	sum := sha256.Sum256(k)
	return SigningKey{ID: hex.EncodeToString(sum[:8]), Key: k}
}

// Options configure a Service.
type Options struct {
	Store store.ArtifactStore
	Blobs blob.Store
	// Signer signs download URLs (required).
	Signer *URLSigner
	// SigningKeys verify signatures; RequireSignature refuses unsigned
	// uploads.
	SigningKeys      []SigningKey
	RequireSignature bool
	MaxSize          int64         // largest artifact, bytes (0: 256 MiB)
	URLTTL           time.Duration // life of a signed URL (0: 1h)
	// URLBase prefixes signed URLs ("https://mote.example.com"); "":
	// URLs are paths (/api/v1/...) relative to the server.
	URLBase string
	InUse   InUse // nil: NoJobs
	// FirmwareKey is the reported-state key devices report their
	// installed version under ("": "firmware").
	FirmwareKey string
	Logger      *slog.Logger
	Metrics     prometheus.Registerer
}

// Service manages artifacts.
type Service struct {
	o       Options
	log     *slog.Logger
	logSome rate.Sometimes

	uploads   *prometheus.CounterVec
	downloads *prometheus.CounterVec
	refusals  *prometheus.CounterVec
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.Blobs == nil || o.Signer == nil {
		return nil, errors.New("artifacts: Store, Blobs and Signer are required")
	}
	if o.MaxSize <= 0 {
		o.MaxSize = 256 << 20
	}
	if o.URLTTL <= 0 {
		o.URLTTL = time.Hour
	}
	if o.InUse == nil {
		o.InUse = NoJobs{}
	}
	if o.FirmwareKey == "" {
		o.FirmwareKey = "firmware"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.URLBase = strings.TrimRight(o.URLBase, "/")
	s := &Service{o: o, log: o.Logger, logSome: rate.Sometimes{Interval: time.Second}}
	s.uploads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mote_artifact_uploads_total",
		Help: "Artifact uploads by result: ok, exists, too_large, bad_sha256, bad_signature, unsigned, failed.",
	}, []string{"result"})
	s.downloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mote_artifact_downloads_total",
		Help: "Artifact downloads started, by how they were authorized: device, signed_url, api.",
	}, []string{"via"})
	s.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mote_artifact_url_refusals_total",
		Help: "Signed artifact URLs refused (forged, expired or malformed).",
	}, []string{"reason"})
	if o.Metrics != nil {
		for _, c := range []prometheus.Collector{s.uploads, s.downloads, s.refusals} {
			if err := o.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("artifacts: metrics: %w", err)
			}
		}
	}
	return s, nil
}

// ValidateName checks an artifact name: a resource name (core.ValidateName)
// without ':' (it separates name and version in placeholders).
func ValidateName(name string) error {
	if err := core.ValidateName("name", name); err != nil {
		return err
	}
	if strings.Contains(name, ":") {
		return core.Invalid("name", "an artifact name may not contain ':'")
	}
	return nil
}

var versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)

// ValidateVersion checks a version: 1..64 of [A-Za-z0-9._+-], starting
// with a letter or digit ("1.2.3", "2024.06.1-rc1+build5").
func ValidateVersion(v string) error {
	if !versionRE.MatchString(v) {
		return core.Invalid("version", "version must be 1 to 64 of [A-Za-z0-9._+-], starting with a letter or digit")
	}
	if v == "latest" {
		return core.Invalid("version", `"latest" is reserved (it names the newest version)`)
	}
	return nil
}

// Upload is what an upload declares besides its content.
type Upload struct {
	Name, Version string
	ContentType   string // "": application/octet-stream
	SHA256        string // expected digest (hex); "": not checked
	Signature     string // base64 ed25519 signature of the SHA-256; "": unsigned
}

// Create stores an artifact streamed from r. Nothing is stored when the
// content is too large, its digest differs from u.SHA256 or the
// signature does not verify.
func (s *Service) Create(ctx context.Context, u Upload, r interface{ Read([]byte) (int, error) }) (store.Artifact, error) {
	a, result, err := s.create(ctx, u, r)
	s.uploads.WithLabelValues(result).Inc()
	if err != nil && result != "ok" && result != "exists" {
		s.logSome.Do(func() {
			s.log.Warn("artifact upload refused", "name", u.Name, "version", u.Version, "result", result, "err", err)
		})
	}
	return a, err
}

func (s *Service) create(ctx context.Context, u Upload, r interface{ Read([]byte) (int, error) }) (store.Artifact, string, error) {
	if err := ValidateName(u.Name); err != nil {
		return store.Artifact{}, "invalid", err
	}
	if err := ValidateVersion(u.Version); err != nil {
		return store.Artifact{}, "invalid", err
	}
	if u.ContentType == "" {
		u.ContentType = "application/octet-stream"
	}
	if len(u.ContentType) > 255 {
		return store.Artifact{}, "invalid", core.Invalid("contentType", "content type is longer than 255 bytes")
	}
	u.SHA256 = strings.ToLower(u.SHA256)
	if u.SHA256 != "" {
		if b, err := hex.DecodeString(u.SHA256); err != nil || len(b) != sha256.Size {
			return store.Artifact{}, "invalid", core.Invalid("sha256", "sha256 must be 64 hex digits")
		}
	}
	var sig []byte
	if u.Signature != "" {
		var err error
		sig, err = decodeB64(u.Signature)
		if err != nil || len(sig) != ed25519.SignatureSize {
			return store.Artifact{}, "invalid", core.Invalid("signature", "signature must be the base64 of a 64-byte ed25519 signature")
		}
		if len(s.o.SigningKeys) == 0 {
			return store.Artifact{}, "bad_signature", core.Invalid("signature", "the server has no signing keys configured (--artifact-signing-keys)")
		}
	} else if s.o.RequireSignature {
		return store.Artifact{}, "unsigned", core.Invalid("signature", "this server accepts only signed artifacts (--artifact-require-signature)")
	}
	if _, err := s.o.Store.Get(ctx, u.Name, u.Version); err == nil {
		return store.Artifact{}, "exists", core.Conflict("artifact %q version %q already exists", u.Name, u.Version)
	} else if !core.IsNotFound(err) {
		return store.Artifact{}, "failed", err
	}

	key := "artifacts/" + u.Name + "/" + randomID()
	info, err := s.o.Blobs.Put(ctx, key, r, s.o.MaxSize)
	if err != nil {
		if core.KindOf(err) == core.KindTooLarge {
			return store.Artifact{}, "too_large", core.Errorf(core.KindTooLarge, "artifact exceeds --artifact-max-size (%d bytes)", s.o.MaxSize)
		}
		return store.Artifact{}, "failed", err
	}
	discard := func() {
		if err := s.o.Blobs.Delete(context.WithoutCancel(ctx), key); err != nil {
			s.log.Error("artifact: delete refused blob", "key", key, "err", err)
		}
	}
	if u.SHA256 != "" && u.SHA256 != info.SHA256 {
		discard()
		return store.Artifact{}, "bad_sha256", core.Invalid("sha256", "content sha256 is %s, not the declared %s", info.SHA256, u.SHA256)
	}
	a := store.Artifact{Name: u.Name, Version: u.Version, ContentType: u.ContentType, Size: info.Size, SHA256: info.SHA256, BlobKey: key}
	if sig != nil {
		digest, _ := hex.DecodeString(info.SHA256)
		for _, k := range s.o.SigningKeys {
			if ed25519.Verify(k.Key, digest, sig) {
				a.Signature, a.SigningKey = base64.StdEncoding.EncodeToString(sig), k.ID
				break
			}
		}
		if a.SigningKey == "" {
			discard()
			return store.Artifact{}, "bad_signature", core.Invalid("signature", "signature does not verify against any configured signing key")
		}
	}
	out, err := s.o.Store.Create(ctx, a)
	if err != nil {
		discard()
		if core.KindOf(err) == core.KindConflict {
			return store.Artifact{}, "exists", err
		}
		return store.Artifact{}, "failed", err
	}
	return out, "ok", nil
}

func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if b, err := base64.RawStdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawURLEncoding.DecodeString(s)
}

func randomID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Get returns an artifact; version "latest" (or "") is the newest.
func (s *Service) Get(ctx context.Context, name, version string) (store.Artifact, error) {
	if version == "" || version == "latest" {
		return s.o.Store.Latest(ctx, name)
	}
	return s.o.Store.Get(ctx, name, version)
}

// List lists artifacts.
func (s *Service) List(ctx context.Context, f store.ArtifactFilter) ([]store.Artifact, error) {
	return s.o.Store.List(ctx, f)
}

// Delete removes an artifact version unless a job uses it
// (core.Conflict naming the job).
func (s *Service) Delete(ctx context.Context, name, version string) error {
	a, err := s.o.Store.Get(ctx, name, version)
	if err != nil {
		return err
	}
	job, err := s.o.InUse.ArtifactInUse(ctx, name, version)
	if err != nil {
		return err
	}
	if job != "" {
		return core.Conflict("artifact %q version %q is used by job %q", name, version, job)
	}
	if err := s.o.Store.Delete(ctx, name, version); err != nil {
		return err
	}
	if err := s.o.Blobs.Delete(ctx, a.BlobKey); err != nil {
		// The row is gone; Sweep removes the orphan later.
		s.log.Error("artifact: delete blob", "key", a.BlobKey, "err", err)
	}
	return nil
}

// Open returns a reader over an artifact's content for
// http.ServeContent. Counted as a download via via.
func (s *Service) Open(ctx context.Context, a store.Artifact, via string) (*blob.ReadSeeker, error) {
	info, err := s.o.Blobs.Stat(ctx, a.BlobKey)
	if err != nil {
		if blob.IsCorrupt(err) {
			s.logSome.Do(func() {
				s.log.Error("artifact: stored content is corrupt", "name", a.Name, "version", a.Version, "err", err)
			})
		}
		return nil, err
	}
	if info.Size != a.Size || info.SHA256 != a.SHA256 {
		return nil, fmt.Errorf("%w: artifact %s@%s: blob is %d bytes %s, row says %d bytes %s", blob.ErrCorrupt, a.Name, a.Version, info.Size, info.SHA256, a.Size, a.SHA256)
	}
	s.downloads.WithLabelValues(via).Inc()
	return blob.NewReadSeeker(ctx, s.o.Blobs, info), nil
}

// VerifyURL checks the signature of a download URL.
func (s *Service) VerifyURL(name, version, exp, sig string) error {
	err := s.o.Signer.Verify(name, version, exp, sig)
	if err != nil {
		reason := "forged"
		if strings.Contains(err.Error(), "expired") {
			reason = "expired"
		}
		s.refusals.WithLabelValues(reason).Inc()
		s.logSome.Do(func() {
			s.log.Warn("signed artifact URL refused", "name", name, "version", version, "reason", reason)
		})
	}
	return err
}

// Link is a signed download URL of one artifact version, as a job
// document embeds it.
type Link struct {
	Name, Version string
	URL           string
	SHA256        string
	Size          int64
	Expires       time.Time
}

// URLPath is the path of the signed download route of name@version.
func URLPath(name, version string) string {
	return "/api/v1/artifacts/" + name + "/" + version + "/download"
}

// Resolve returns a signed URL of name@version (version "" or "latest":
// the newest), valid for Options.URLTTL from now.
func (s *Service) Resolve(ctx context.Context, name, version string) (Link, error) {
	a, err := s.Get(ctx, name, version)
	if err != nil {
		return Link{}, err
	}
	exp, sig := s.o.Signer.Sign(a.Name, a.Version, s.o.URLTTL)
	l := Link{Name: a.Name, Version: a.Version, SHA256: a.SHA256, Size: a.Size,
		URL: s.o.URLBase + URLPath(a.Name, a.Version) + "?exp=" + exp + "&sig=" + sig}
	var e int64
	fmt.Sscan(exp, &e)
	l.Expires = time.Unix(e, 0).UTC()
	return l, nil
}

// FirmwareCounts is the fleet's firmware distribution: things by the
// version they report under Options.FirmwareKey.
func (s *Service) FirmwareCounts(ctx context.Context) (key string, counts []store.FirmwareCount, err error) {
	counts, err = s.o.Store.FirmwareCounts(ctx, s.o.FirmwareKey)
	return s.o.FirmwareKey, counts, err
}

// Sweep deletes blobs under artifacts/ that no artifact row references
// and that are older than grace (left by a crash between the blob and
// the row, or a failed delete). It returns how many it deleted.
func (s *Service) Sweep(ctx context.Context, grace time.Duration) (int, error) {
	blobs, err := s.o.Blobs.List(ctx, "artifacts/")
	if err != nil {
		return 0, err
	}
	used := map[string]bool{}
	f := store.ArtifactFilter{Limit: 1000}
	for {
		page, err := s.o.Store.List(ctx, f)
		if err != nil {
			return 0, err
		}
		for _, a := range page {
			used[a.BlobKey] = true
		}
		if len(page) < f.Limit {
			break
		}
		f.After = store.ArtifactCursor(page[len(page)-1])
	}
	n := 0
	cutoff := time.Now().Add(-grace)
	for _, b := range blobs {
		if used[b.Key] || b.Created.After(cutoff) {
			continue
		}
		if err := s.o.Blobs.Delete(ctx, b.Key); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
