// Package blob is Mote's store of large immutable objects: firmware
// artifacts (internal/artifacts) and files uploaded by devices
// (internal/files). A single node keeps them as files in the data
// directory (blob/fsblob); a cluster keeps them in a NATS JetStream object
// store (blob/natsblob). Both pass the conformance suite in blob/blobtest.
//
// Objects are written once, whole: Put streams from an io.Reader,
// computing the size and the SHA-256 on the way, and the object becomes
// visible only when the reader has been read to its end without error — a
// failed or interrupted Put leaves nothing behind. Reads take an offset and
// a length, so HTTP Range requests read only what they serve (see
// NewReadSeeker for http.ServeContent). Metadata beyond size and digest
// (names, versions, owners) is kept by the caller in store.Store.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	SHA256  string // lowercase hex of the content's SHA-256
	Created time.Time
}

// Store keeps objects by key. Keys are slash-separated paths of
// [A-Za-z0-9._-] segments (ValidKey). Errors carry core kinds:
// core.NotFound for a missing key, core.TooLarge for a Put past its
// limit, core.InsufficientStorage for a failed write, and ErrCorrupt for
// an object whose stored bytes no longer match what was written.
type Store interface {
	// Put stores the content of r under key, replacing an object already
	// there, and returns its Info. With max > 0, content longer than max
	// bytes is refused (core.KindTooLarge) and nothing is stored. An error
	// from r (including ctx's) aborts the Put and stores nothing.
	Put(ctx context.Context, key string, r io.Reader, max int64) (Info, error)
	// Get returns the bytes [offset, offset+length) of an object (length
	// < 0: to the end). A read that reaches the end of a whole-object
	// read (offset 0, length < 0) checks the SHA-256 and ends in
	// ErrCorrupt instead of io.EOF when it does not match.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Stat returns an object's Info.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes an object; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List returns the objects whose key starts with prefix, ordered by key.
	List(ctx context.Context, prefix string) ([]Info, error)
	// Close releases the store's resources.
	Close() error
}

// ErrCorrupt is returned when stored bytes do not match the size or the
// SHA-256 recorded when they were written (a damaged disk, a file edited
// or truncated behind Mote's back).
var ErrCorrupt = core.Errorf(core.KindInternal, "blob: stored object is corrupt (size or sha256 mismatch)")

// IsCorrupt reports whether err is, or wraps, ErrCorrupt.
func IsCorrupt(err error) bool { return errors.Is(err, ErrCorrupt) }

// MaxKeyLen bounds a key.
const MaxKeyLen = 512

// ValidKey checks a key: 1..MaxKeyLen bytes, segments separated by '/',
// each non-empty, of [A-Za-z0-9._-], and not "." or "..".
func ValidKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return core.Errorf(core.KindInvalid, "blob key must be 1..%d bytes", MaxKeyLen)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return core.Errorf(core.KindInvalid, "blob key %q has an empty, '.' or '..' segment", key)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return core.Errorf(core.KindInvalid, "blob key %q: byte %q not allowed (use [A-Za-z0-9._-] and '/')", key, c)
			}
		}
	}
	return nil
}

// TooLarge is the error of a Put past its limit.
func TooLarge(max int64) error {
	return core.Errorf(core.KindTooLarge, "content exceeds the limit of %d bytes", max)
}

// LimitReader reads r and fails with TooLarge once more than max bytes
// came (max <= 0: no limit).
func LimitReader(r io.Reader, max int64) io.Reader {
	if max <= 0 {
		return r
	}
	return &limitReader{r: r, left: max, max: max}
}

type limitReader struct {
	r         io.Reader
	left, max int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, TooLarge(l.max)
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, TooLarge(l.max)
	}
	return n, err
}

// ctxReader fails a read once ctx is done, so a Put of a stalled stream
// ends with its request.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

// ContextReader returns r that fails with ctx.Err() once ctx is done.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return &ctxReader{ctx, r} }

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// ReadSeeker is an io.ReadSeeker over size bytes that opens a read at the
// position of the last Seek only when Read is called: http.ServeContent
// serves Range requests with it, reading only the ranges asked for.
type ReadSeeker struct {
	size int64
	open func(off int64) (io.ReadCloser, error) // a read from off to the end
	pos  int64
	rc   io.ReadCloser
}

// NewReadSeeker returns a ReadSeeker over the object info describes,
// reading through s.Get. Close it when done.
func NewReadSeeker(ctx context.Context, s Store, info Info) *ReadSeeker {
	return OpenReadSeeker(info.Size, func(off int64) (io.ReadCloser, error) {
		length := int64(-1)
		if off > 0 {
			length = info.Size - off
		}
		return s.Get(ctx, info.Key, off, length)
	})
}

// OpenReadSeeker returns a ReadSeeker over size bytes that open reads
// from an offset to the end (a decrypting reader, say). Close it when
// done.
func OpenReadSeeker(size int64, open func(off int64) (io.ReadCloser, error)) *ReadSeeker {
	return &ReadSeeker{size: size, open: open}
}

// Seek sets the position of the next Read.
func (rs *ReadSeeker) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = rs.pos + offset
	case io.SeekEnd:
		abs = rs.size + offset
	default:
		return 0, fmt.Errorf("blob: seek: bad whence %d", whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("blob: seek to a negative position")
	}
	if abs != rs.pos && rs.rc != nil {
		rs.rc.Close()
		rs.rc = nil
	}
	rs.pos = abs
	return abs, nil
}

// Read reads from the current position.
func (rs *ReadSeeker) Read(p []byte) (int, error) {
	if rs.pos >= rs.size {
		return 0, io.EOF
	}
	if rs.rc == nil {
		rc, err := rs.open(rs.pos)
		if err != nil {
			return 0, err
		}
		rs.rc = rc
	}
	n, err := rs.rc.Read(p)
	rs.pos += int64(n)
	return n, err
}

// Close closes the current read.
func (rs *ReadSeeker) Close() error {
	if rs.rc != nil {
		err := rs.rc.Close()
		rs.rc = nil
		return err
	}
	return nil
}
