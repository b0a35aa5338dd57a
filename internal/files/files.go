// Package files keeps the files devices upload (issue 16): logs, images,
// crash dumps, sent over the HTTP device API with PUT and resumable with
// Content-Range; applications list, download and delete them over REST.
//
// Content is encrypted at rest (enc.go: AES-256-GCM in 64 KiB chunks
// under a per-blob key derived from files.key in the data directory) and
// kept in the blob store (internal/blob); the metadata is a
// store.FileStore row per (thing, name).
//
// An upload is a sequence of pieces. Each piece (one PUT) becomes one
// encrypted blob, a part; a piece cut short (the client went away, the
// HTTP body timeout) keeps what arrived, so the device asks how much the
// server has (HEAD/GET) and continues from there. When the parts reach
// the declared total (or a PUT without Content-Range reaches the end of
// its body), the upload completes: a single part becomes the file as it
// is; several are decrypted and re-encrypted into one blob, hashed on the
// way. The completed file replaces the previous content of that name, its
// SHA-256 is returned, and a file-uploaded event is published on
// $mote/events/files/{thing}/{name}.
//
// Limits: a size per file, a quota of bytes per thing (complete files and
// uploads in progress together) and a number of files per thing; all
// refused with core.KindTooLarge (HTTP 413) before the body is read when
// the request declares its size, or as soon as the body passes them.
package files

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/moteiot/mote/internal/blob"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/keyfile"
	"github.com/moteiot/mote/internal/store"
)

// Publisher publishes platform events (*broker.Broker).
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// EventTopic is the topic of a file's events.
func EventTopic(thing, name string) string { return "$mote/events/files/" + thing + "/" + name }

// Options configure a Service.
type Options struct {
	Store store.FileStore
	Blobs blob.Store
	Key   []byte // KeySize bytes (LoadOrCreateKey)

	MaxFileSize   int64 // bytes per file (0: 64 MiB)
	QuotaPerThing int64 // bytes per thing (0: 256 MiB)
	MaxFiles      int   // files per thing (0: 100)
	// PieceTimeout bounds the work on one piece once its body ended
	// (recording it, composing a complete file; the body itself is
	// bounded by the HTTP body timeout); 0: 1 minute.
	PieceTimeout time.Duration

	// Events publishes file-uploaded events to MQTT subscribers and Bus
	// hands them to the platform's consumers (rules); nil: not there.
	Events  Publisher
	Bus     interface{ Publish(core.Message) }
	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

// Service manages files.
type Service struct {
	o       Options
	log     *slog.Logger
	logSome rate.Sometimes

	mu      sync.Mutex
	locked  map[string]bool // thing + "\x00" + name: an upload or delete in progress
	uploads *prometheus.CounterVec
	bytes   prometheus.Counter
	reads   prometheus.Counter

	// Blobs of deleted things, deleted by one worker (Start, Close).
	forget    chan string
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// forgetQueue bounds the deleted things whose blobs wait to be deleted.
const forgetQueue = 1024

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.Blobs == nil {
		return nil, errors.New("files: Store and Blobs are required")
	}
	if len(o.Key) != KeySize {
		return nil, fmt.Errorf("files: key is %d bytes; want %d", len(o.Key), KeySize)
	}
	if o.MaxFileSize <= 0 {
		o.MaxFileSize = 64 << 20
	}
	if o.QuotaPerThing <= 0 {
		o.QuotaPerThing = 256 << 20
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = 100
	}
	if o.PieceTimeout <= 0 {
		o.PieceTimeout = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Service{o: o, log: o.Logger, logSome: rate.Sometimes{Interval: time.Second}, locked: map[string]bool{},
		forget: make(chan string, forgetQueue), done: make(chan struct{})}
	s.uploads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mote_file_uploads_total",
		Help: "Device file upload requests (PUT /devices/{thing}/files/{name}) by result: complete, partial, too_large, quota, conflict, invalid, failed.",
	}, []string{"result"})
	s.bytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mote_file_upload_bytes_total",
		Help: "Bytes of device file uploads stored (before encryption).",
	})
	s.reads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mote_file_downloads_total",
		Help: "Downloads of device files started.",
	})
	if o.Metrics != nil {
		for _, c := range []prometheus.Collector{s.uploads, s.bytes, s.reads} {
			if err := o.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("files: metrics: %w", err)
			}
		}
	}
	return s, nil
}

// LoadOrCreateKey reads the files key at path (datadir.FilesKey),
// creating it the first time.
func LoadOrCreateKey(path string) ([]byte, error) {
	k, err := keyfile.LoadOrCreate(path, KeySize)
	if err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	return k, nil
}

// ValidateName checks a file name: a resource name (core.ValidateName:
// [A-Za-z0-9_.:-], 1..128, not starting with '.' or '-').
func ValidateName(name string) error { return core.ValidateName("name", name) }

// thingDir is the blob prefix of a thing's files: thing names may hold
// ':' (not a blob key byte), so the name is hex-encoded.
func thingDir(thing string) string { return "files/" + hex.EncodeToString([]byte(thing)) + "/" }

func randomID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Service) lock(thing, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := thing + "\x00" + name
	if s.locked[k] {
		return false
	}
	s.locked[k] = true
	return true
}

func (s *Service) unlock(thing, name string) {
	s.mu.Lock()
	delete(s.locked, thing+"\x00"+name)
	s.mu.Unlock()
}

// Upload is one piece of an upload (one PUT).
type Upload struct {
	Thing, Name string
	ContentType string        // "": application/octet-stream
	Range       *ContentRange // nil: the whole file in this request
	Length      int64         // the request's Content-Length; -1 when not known
}

// UploadError is returned when a piece's body failed after some bytes
// were kept: File tells what the server has, so the device resumes at
// File.Received.
type UploadError struct {
	File store.File
	Err  error
}

func (e *UploadError) Error() string {
	return fmt.Sprintf("upload interrupted after %d bytes were kept: %v", e.File.Received, e.Err)
}
func (e *UploadError) Unwrap() error { return e.Err }

// Put stores one piece of a file from body and returns the file as it
// now is: Complete once the whole content arrived.
func (s *Service) Put(ctx context.Context, u Upload, body io.Reader) (store.File, error) {
	f, result, err := s.put(ctx, u, body)
	s.uploads.WithLabelValues(result).Inc()
	if err != nil && result == "failed" {
		s.logSome.Do(func() { s.log.Warn("file upload failed", "thing", u.Thing, "file", u.Name, "err", err) })
	}
	return f, err
}

// stopReader turns a read error of the body into the end of the piece,
// remembering it: what arrived before is kept.
type stopReader struct {
	r   io.Reader
	err error
}

func (s *stopReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, io.EOF
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		if core.KindOf(err) == core.KindTooLarge {
			return n, err
		}
		s.err = err
		return n, io.EOF
	}
	return n, err
}

func (s *Service) put(ctx context.Context, u Upload, body io.Reader) (store.File, string, error) {
	if err := ValidateName(u.Name); err != nil {
		return store.File{}, "invalid", err
	}
	if u.ContentType == "" {
		u.ContentType = "application/octet-stream"
	}
	if len(u.ContentType) > 255 {
		return store.File{}, "invalid", core.Invalid("Content-Type", "content type is longer than 255 bytes")
	}
	if !s.lock(u.Thing, u.Name) {
		return store.File{}, "conflict", core.Conflict("file %q: another upload or delete of it is in progress", u.Name)
	}
	defer s.unlock(u.Thing, u.Name)

	f, err := s.o.Store.Get(ctx, u.Thing, u.Name)
	exists := err == nil
	if err != nil && !core.IsNotFound(err) {
		return store.File{}, "failed", err
	}
	if !exists {
		f = store.File{Thing: u.Thing, Name: u.Name}
		list, err := s.o.Store.List(ctx, u.Thing)
		if err != nil {
			return store.File{}, "failed", err
		}
		if len(list) >= s.o.MaxFiles {
			return store.File{}, "quota", core.Errorf(core.KindTooLarge, "thing %q has %d files, the most --file-max-count allows", u.Thing, len(list))
		}
	}

	start, total, pieceLen := int64(0), u.Length, u.Length
	if u.Range != nil {
		start, total, pieceLen = u.Range.Start, u.Range.Total, u.Range.Len()
		if u.Length >= 0 && u.Length != pieceLen {
			return store.File{}, "invalid", core.Invalid("Content-Range", "Content-Length %d differs from the Content-Range's %d bytes", u.Length, pieceLen)
		}
	}
	restart := start == 0
	if !restart {
		if f.UploadID == "" || f.Received != start {
			have := int64(0)
			if f.UploadID != "" {
				have = f.Received
			}
			return f, "conflict", core.Conflict("file %q: the server has %d bytes of this upload; continue from there (Content-Range: bytes %d-...)", u.Name, have, have)
		}
		if f.Total >= 0 && total >= 0 && f.Total != total {
			return f, "invalid", core.Invalid("Content-Range", "total %d differs from the upload's %d", total, f.Total)
		}
		if total < 0 {
			total = f.Total
		}
	}
	// Limits, before the body is read when its size is declared.
	if total > s.o.MaxFileSize || (pieceLen >= 0 && start+pieceLen > s.o.MaxFileSize) {
		return f, "too_large", core.Errorf(core.KindTooLarge, "file is larger than --file-max-size (%d bytes)", s.o.MaxFileSize)
	}
	usage, err := s.o.Store.Usage(ctx, u.Thing)
	if err != nil {
		return f, "failed", err
	}
	if restart && f.UploadID != "" {
		usage -= f.Received // the pending upload this one replaces
	}
	avail := s.o.QuotaPerThing - usage
	need := pieceLen
	if total >= 0 {
		need = total - start
	}
	if need > avail || avail <= 0 {
		return f, "quota", core.Errorf(core.KindTooLarge, "thing %q would exceed --file-quota-per-thing (%d bytes; %d in use)", u.Thing, s.o.QuotaPerThing, usage)
	}
	limit := min(s.o.MaxFileSize-start, avail)
	if pieceLen >= 0 {
		limit = min(limit, pieceLen)
	}

	old := f
	if restart {
		f.UploadID, f.Received, f.Parts, f.Total = randomID(), 0, 0, -1
		f.ContentType = u.ContentType
	}
	if total >= 0 {
		f.Total = total
	}
	partKey := fmt.Sprintf("%s%s-%06d", thingDir(u.Thing), f.UploadID, f.Parts+1)
	var h hash.Hash
	if restart {
		h = sha256.New()
	}
	sr := &stopReader{r: blob.LimitReader(body, limit)}
	enc, err := newEncReader(s.o.Key, partKey, sr, h)
	if err != nil {
		return old, "failed", err
	}
	// The piece is stored even if the request's context ends (the
	// client went away): what arrived is kept for the resume. The body
	// itself is bounded by the HTTP body deadline; PieceTimeout bounds
	// what follows it.
	if _, err := s.o.Blobs.Put(context.WithoutCancel(ctx), partKey, enc, 0); err != nil {
		if core.KindOf(err) == core.KindTooLarge {
			if pieceLen >= 0 && limit == pieceLen {
				return old, "invalid", core.Invalid("Content-Range", "the body is longer than declared (%d bytes)", pieceLen)
			}
			return old, "quota", core.Errorf(core.KindTooLarge, "file exceeds --file-max-size (%d bytes) or --file-quota-per-thing (%d bytes)", s.o.MaxFileSize, s.o.QuotaPerThing)
		}
		return old, "failed", err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.PieceTimeout)
	defer cancel()
	n := enc.plainN
	if n == 0 && !(restart && sr.err == nil) {
		// Nothing arrived (and this is not an empty file).
		s.o.Blobs.Delete(pctx, partKey)
		if sr.err != nil {
			return old, "failed", sr.err
		}
		return old, "invalid", core.Invalid("body", "empty piece")
	}
	s.bytes.Add(float64(n))
	f.Received += n
	f.Parts++
	done := sr.err == nil && ((f.Total >= 0 && f.Received == f.Total) || (u.Range == nil && f.Total < 0))
	if u.Range == nil && u.Length >= 0 && n != u.Length && sr.err == nil {
		done = false
	}
	if !done {
		nf, err := s.o.Store.Put(pctx, f)
		if err != nil {
			s.o.Blobs.Delete(pctx, partKey)
			return old, "failed", err
		}
		if restart && old.UploadID != "" {
			s.deleteParts(pctx, u.Thing, old.UploadID)
		}
		if sr.err != nil {
			return nf, "partial", &UploadError{File: nf, Err: sr.err}
		}
		return nf, "partial", nil
	}

	// Complete.
	dataKey, sum := partKey, ""
	if f.Parts == 1 {
		sum = hex.EncodeToString(h.Sum(nil))
	} else {
		dataKey = fmt.Sprintf("%s%s.data", thingDir(u.Thing), f.UploadID) // not under the parts prefix "ID-"
		// Composing rereads and rewrites the file: PieceTimeout plus a
		// second per 8 MiB.
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.PieceTimeout+time.Duration(f.Received/(8<<20))*time.Second)
		sum, err = s.compose(cctx, f, dataKey)
		ccancel()
		if err != nil {
			return old, "failed", err
		}
	}
	uploadID := f.UploadID
	prev := old.BlobKey
	f.Complete, f.Size, f.SHA256, f.BlobKey = true, f.Received, sum, dataKey
	f.UploadID, f.Received, f.Total, f.Parts = "", 0, 0, 0
	nf, err := s.o.Store.Put(pctx, f)
	if err != nil {
		s.o.Blobs.Delete(pctx, dataKey)
		return old, "failed", err
	}
	if prev != "" && prev != dataKey {
		s.o.Blobs.Delete(pctx, prev)
	}
	if dataKey != partKey {
		s.deleteParts(pctx, u.Thing, uploadID)
	}
	if restart && old.UploadID != "" && old.UploadID != uploadID {
		s.deleteParts(pctx, u.Thing, old.UploadID)
	}
	s.publish(nf)
	return nf, "complete", nil
}

// compose decrypts the parts of an upload in order into one blob at key
// and returns the SHA-256 of the content.
func (s *Service) compose(ctx context.Context, f store.File, key string) (string, error) {
	pr, pw := io.Pipe()
	go func() {
		var err error
		for i := 1; i <= f.Parts && err == nil; i++ {
			pk := fmt.Sprintf("%s%s-%06d", thingDir(f.Thing), f.UploadID, i)
			var d *decReader
			d, err = openDecrypt(ctx, s.o.Blobs, s.o.Key, pk, plainSize(mustStat(ctx, s.o.Blobs, pk)), 0)
			if err != nil {
				break
			}
			_, err = io.Copy(pw, d)
			d.Close()
		}
		pw.CloseWithError(err)
	}()
	h := sha256.New()
	enc, err := newEncReader(s.o.Key, key, pr, h)
	if err != nil {
		pr.Close()
		return "", err
	}
	if _, err := s.o.Blobs.Put(ctx, key, enc, 0); err != nil {
		pr.CloseWithError(err)
		return "", fmt.Errorf("files: compose %s: %w", f.Name, err)
	}
	if enc.plainN != f.Received {
		s.o.Blobs.Delete(ctx, key)
		return "", fmt.Errorf("%w: parts of %s hold %d bytes; the upload recorded %d", ErrDecrypt, f.Name, enc.plainN, f.Received)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// plainSize inverts EncryptedSize (-1 for a size no blob can have).
func plainSize(enc int64) int64 {
	body := enc - int64(encHeader)
	if body < tagSize {
		return -1
	}
	n := (body + ChunkSize + tagSize - 1) / (ChunkSize + tagSize)
	return body - n*tagSize
}

func (s *Service) deleteParts(ctx context.Context, thing, uploadID string) {
	l, err := s.o.Blobs.List(ctx, thingDir(thing)+uploadID+"-")
	if err != nil {
		s.log.Error("files: list parts", "thing", thing, "err", err)
		return
	}
	for _, b := range l {
		if err := s.o.Blobs.Delete(ctx, b.Key); err != nil {
			s.log.Error("files: delete part", "key", b.Key, "err", err)
		}
	}
}

// Event is the payload of a file-uploaded event.
type Event struct {
	Event       string    `json:"event"` // "file-uploaded"
	Time        time.Time `json:"time"`
	Thing       string    `json:"thing"`
	Name        string    `json:"name"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	ContentType string    `json:"contentType"`
}

func (s *Service) publish(f store.File) {
	b, _ := json.Marshal(Event{Event: "file-uploaded", Time: f.UpdatedAt, Thing: f.Thing, Name: f.Name, Size: f.Size, SHA256: f.SHA256, ContentType: f.ContentType})
	topic := EventTopic(f.Thing, f.Name)
	if s.o.Bus != nil {
		s.o.Bus.Publish(core.Message{Topic: topic, Payload: b, QoS: 1, Received: time.Now().UTC(), Protocol: "platform"})
	}
	if s.o.Events != nil {
		if err := s.o.Events.Publish(topic, b, false, 1); err != nil {
			s.logSome.Do(func() { s.log.Warn("files: publish event", "thing", f.Thing, "file", f.Name, "err", err) })
		}
	}
}

// Get returns a file's row.
func (s *Service) Get(ctx context.Context, thing, name string) (store.File, error) {
	return s.o.Store.Get(ctx, thing, name)
}

// List returns a thing's files.
func (s *Service) List(ctx context.Context, thing string) ([]store.File, error) {
	return s.o.Store.List(ctx, thing)
}

// Delete removes a file, its content and any upload in progress.
func (s *Service) Delete(ctx context.Context, thing, name string) error {
	if !s.lock(thing, name) {
		return core.Conflict("file %q: an upload of it is in progress", name)
	}
	defer s.unlock(thing, name)
	f, err := s.o.Store.Get(ctx, thing, name)
	if err != nil {
		return err
	}
	if err := s.o.Store.Delete(ctx, thing, name); err != nil {
		return err
	}
	if f.BlobKey != "" {
		if err := s.o.Blobs.Delete(ctx, f.BlobKey); err != nil {
			s.log.Error("files: delete blob", "key", f.BlobKey, "err", err)
		}
	}
	if f.UploadID != "" {
		s.deleteParts(ctx, thing, f.UploadID)
	}
	return nil
}

// Start starts the worker that deletes the blobs of deleted things.
func (s *Service) Start() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-s.done:
				return
			case thing := <-s.forget:
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				if err := s.DeleteThing(ctx, thing); err != nil {
					s.log.Error("files: delete the files of a deleted thing", "thing", thing, "err", err)
				}
				cancel()
			}
		}
	}()
}

// Close stops the worker; blobs of things still queued stay (DeleteThing
// removes them when the thing is deleted again, or by hand).
func (s *Service) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	s.wg.Wait()
	return nil
}

// ForgetThing queues the deletion of a deleted thing's blobs (its rows
// went with it). It never blocks: with the queue full the blobs stay and
// an error is logged.
func (s *Service) ForgetThing(thing string) {
	select {
	case s.forget <- thing:
	default:
		s.logSome.Do(func() { s.log.Error("files: queue of deleted things is full; their blobs stay", "thing", thing) })
	}
}

// DeleteThing removes the blobs of a deleted thing (its rows went with
// it).
func (s *Service) DeleteThing(ctx context.Context, thing string) error {
	l, err := s.o.Blobs.List(ctx, thingDir(thing))
	if err != nil {
		return err
	}
	for _, b := range l {
		if err := s.o.Blobs.Delete(ctx, b.Key); err != nil {
			return err
		}
	}
	return nil
}

// Content is an open file for http.ServeContent.
type Content interface {
	io.ReadSeeker
	io.Closer
}

// Open returns the complete content of a file, decrypted as it is read
// from any offset. A file still uploading for the first time is
// core.NotFound.
func (s *Service) Open(ctx context.Context, f store.File) (Content, error) {
	if !f.Complete {
		return nil, core.Errorf(core.KindNotFound, "file %q is still being uploaded (%d bytes so far)", f.Name, f.Received)
	}
	if EncryptedSize(f.Size) != mustStat(ctx, s.o.Blobs, f.BlobKey) {
		return nil, fmt.Errorf("%w: %s/%s: stored content does not have the recorded size", blob.ErrCorrupt, f.Thing, f.Name)
	}
	s.reads.Inc()
	// Decrypting from the position of the last Seek (http.ServeContent).
	return blob.OpenReadSeeker(f.Size, func(off int64) (io.ReadCloser, error) {
		return openDecrypt(ctx, s.o.Blobs, s.o.Key, f.BlobKey, f.Size, off)
	}), nil
}
