// Package fsblob is the blob.Store of a single node: one file per object
// under a directory of the data directory (datadir.Blobs).
//
// An object with key "a/b" is the file objects/a/b.blob. Its first
// HeaderSize bytes are a header — magic, content size, SHA-256, creation
// time — and the content follows. Put streams into a temporary file under
// tmp/, hashing on the way, writes the header last, fsyncs the file,
// renames it into place and fsyncs the directory: a crash (SIGKILL, power
// loss) at any point leaves either the old object or the new one, never a
// half-written one. Open removes temporary files left by a crash.
//
// Reads check the file against its header: a file shorter or longer than
// the header says, or with a damaged header, is blob.ErrCorrupt; a whole
// read whose SHA-256 differs ends in blob.ErrCorrupt.
package fsblob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/moteiot/mote/internal/blob"
	"github.com/moteiot/mote/internal/core"
)

var _ blob.Store = (*Store)(nil)

const (
	magic = "MOTEBLOB1\n"
	// HeaderSize is magic (10) + size (8) + sha256 (32) + created unix ms (8).
	HeaderSize = len(magic) + 8 + 32 + 8
	suffix     = ".blob"
)

// Store is a blob.Store on a directory. It is safe for concurrent use.
type Store struct {
	dir string
}

// Open opens (creating it, mode 0700) the blob directory dir and removes
// temporary files an interrupted Put left behind.
func Open(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "objects"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("fsblob: %w", err)
		}
	}
	tmp := filepath.Join(dir, "tmp")
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return nil, fmt.Errorf("fsblob: %w", err)
	}
	for _, e := range entries {
		os.Remove(filepath.Join(tmp, e.Name()))
	}
	return &Store{dir: dir}, nil
}

func (s *Store) path(key string) (string, error) {
	if err := blob.ValidKey(key); err != nil {
		return "", err
	}
	segs := strings.Split(key, "/")
	for _, seg := range segs[:len(segs)-1] {
		if strings.HasSuffix(seg, suffix) {
			return "", core.Errorf(core.KindInvalid, "blob key %q: a directory segment may not end in %q", key, suffix)
		}
	}
	return filepath.Join(s.dir, "objects", filepath.FromSlash(key)+suffix), nil
}

// Put streams r into a temporary file and renames it into place.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, max int64) (info blob.Info, err error) {
	p, err := s.path(key)
	if err != nil {
		return blob.Info{}, err
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "put-*")
	if err != nil {
		return blob.Info{}, storageErr("create temporary file", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(make([]byte, HeaderSize)); err != nil {
		return blob.Info{}, storageErr("write", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), blob.LimitReader(blob.ContextReader(ctx, r), max))
	if err != nil {
		if k := core.KindOf(err); k == core.KindTooLarge || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return blob.Info{}, err
		}
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Path == f.Name() {
			return blob.Info{}, storageErr("write", err)
		}
		return blob.Info{}, fmt.Errorf("blob: read content: %w", err)
	}
	info = blob.Info{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Created: time.Now().UTC().Truncate(time.Millisecond)}
	if _, err := f.WriteAt(header(info), 0); err != nil {
		return blob.Info{}, storageErr("write header", err)
	}
	if err := f.Sync(); err != nil {
		return blob.Info{}, storageErr("fsync", err)
	}
	if err := f.Close(); err != nil {
		return blob.Info{}, storageErr("close", err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return blob.Info{}, storageErr("mkdir", err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return blob.Info{}, storageErr("rename", err)
	}
	syncDir(filepath.Dir(p))
	return info, nil
}

func storageErr(step string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &core.Error{Kind: core.KindInsufficientStorage, Msg: "blob store: disk full", Err: err}
	}
	return &core.Error{Kind: core.KindInsufficientStorage, Msg: "blob store: " + step + " failed", Err: err}
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

func header(info blob.Info) []byte {
	b := make([]byte, 0, HeaderSize)
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint64(b, uint64(info.Size))
	sum, _ := hex.DecodeString(info.SHA256)
	b = append(b, sum...)
	b = binary.BigEndian.AppendUint64(b, uint64(info.Created.UnixMilli()))
	return b
}

// readHeader reads and checks the header of an open object file.
func readHeader(f *os.File, key string) (blob.Info, error) {
	b := make([]byte, HeaderSize)
	if _, err := io.ReadFull(f, b); err != nil {
		return blob.Info{}, fmt.Errorf("%w: %s: short header", blob.ErrCorrupt, key)
	}
	if !bytes.Equal(b[:len(magic)], []byte(magic)) {
		return blob.Info{}, fmt.Errorf("%w: %s: bad magic", blob.ErrCorrupt, key)
	}
	b = b[len(magic):]
	info := blob.Info{
		Key:     key,
		Size:    int64(binary.BigEndian.Uint64(b[:8])),
		SHA256:  hex.EncodeToString(b[8:40]),
		Created: time.UnixMilli(int64(binary.BigEndian.Uint64(b[40:48]))).UTC(),
	}
	st, err := f.Stat()
	if err != nil {
		return blob.Info{}, fmt.Errorf("blob: stat %s: %w", key, err)
	}
	if info.Size < 0 || st.Size() != int64(HeaderSize)+info.Size {
		return blob.Info{}, fmt.Errorf("%w: %s: file is %d bytes, header says %d of content", blob.ErrCorrupt, key, st.Size()-int64(HeaderSize), info.Size)
	}
	return info, nil
}

func (s *Store) open(key string) (*os.File, blob.Info, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, blob.Info{}, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, blob.Info{}, core.Errorf(core.KindNotFound, "blob %q not found", key)
	}
	if err != nil {
		return nil, blob.Info{}, fmt.Errorf("blob: open %s: %w", key, err)
	}
	info, err := readHeader(f, key)
	if err != nil {
		f.Close()
		return nil, blob.Info{}, err
	}
	return f, info, nil
}

// Get returns a range of an object.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	f, info, err := s.open(key)
	if err != nil {
		return nil, err
	}
	if offset < 0 || offset > info.Size {
		f.Close()
		return nil, core.Errorf(core.KindInvalid, "offset %d is outside the object (%d bytes)", offset, info.Size)
	}
	whole := offset == 0 && length < 0
	if length < 0 || offset+length > info.Size {
		length = info.Size - offset
	}
	sr := io.NewSectionReader(f, int64(HeaderSize)+offset, length)
	rd := &reader{f: f, r: sr}
	if whole {
		rd.h, rd.want = sha256.New(), info.SHA256
	}
	return rd, nil
}

type reader struct {
	f    *os.File
	r    io.Reader
	h    hash.Hash // nil: not a whole read
	want string
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if r.h != nil {
		r.h.Write(p[:n])
		if err == io.EOF && hex.EncodeToString(r.h.Sum(nil)) != r.want {
			return n, fmt.Errorf("%w: sha256 mismatch", blob.ErrCorrupt)
		}
	}
	return n, err
}

func (r *reader) Close() error { return r.f.Close() }

// Stat returns an object's Info from its header.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	f, info, err := s.open(key)
	if err != nil {
		return blob.Info{}, err
	}
	f.Close()
	return info, nil
}

// Delete removes an object.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: delete %s: %w", key, err)
	}
	return nil
}

// List walks the objects under prefix. A corrupt object is listed with
// the size of its file and no digest.
func (s *Store) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	root := filepath.Join(s.dir, "objects")
	// Walk only the directory the prefix names.
	start := root
	if i := strings.LastIndexByte(prefix, '/'); i > 0 {
		if blob.ValidKey(prefix[:i]) != nil {
			return nil, nil
		}
		start = filepath.Join(root, filepath.FromSlash(prefix[:i]))
	}
	var out []blob.Info
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, suffix) {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		key := strings.TrimSuffix(filepath.ToSlash(rel), suffix)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := s.Stat(ctx, key)
		if err != nil {
			if !blob.IsCorrupt(err) {
				return err
			}
			info = blob.Info{Key: key}
			if st, serr := d.Info(); serr == nil {
				info.Size = st.Size()
			}
		}
		out = append(out, info)
		return ctx.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("blob: list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Close does nothing: the store holds no open files between calls.
func (s *Store) Close() error { return nil }
