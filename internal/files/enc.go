package files

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/moteiot/mote/internal/blob"
)

// The at-rest format of a file's blob: a header, then the content in
// chunks of ChunkSize bytes, each sealed with AES-256-GCM on its own, so
// that both writing and reading (from any offset) stream:
//
//	"MOTEENC1" ‖ salt (24 bytes)
//	chunk 0 ‖ tag ‖ chunk 1 ‖ tag ‖ ... ‖ last chunk ‖ tag
//
// The key of a blob is HMAC-SHA256(files.key, "mote-file-v1" ‖ salt ‖
// blob key), so every blob has its own key and a blob copied under
// another key (another thing's files) does not open. The nonce of chunk i
// is i as 8 big-endian bytes, three zero bytes and a last-chunk flag
// (1 on the last chunk), so chunks cannot be reordered, dropped or the
// file truncated at a chunk boundary without detection. There is always a
// last chunk (empty for an empty file).
const (
	encMagic  = "MOTEENC1"
	saltSize  = 24
	encHeader = len(encMagic) + saltSize
	ChunkSize = 64 << 10
	tagSize   = 16
)

// KeySize is the size of the files key.
const KeySize = 32

// ErrDecrypt is returned for stored content that does not decrypt: a
// damaged or altered blob, or the wrong files.key.
var ErrDecrypt = errors.New("files: stored content does not decrypt (damaged, altered, or another files.key)")

// EncryptedSize is the size of the blob that holds size bytes.
func EncryptedSize(size int64) int64 {
	n := (size + ChunkSize - 1) / ChunkSize
	if n == 0 {
		n = 1
	}
	return int64(encHeader) + n*tagSize + size
}

func blobAEAD(master, salt []byte, key string) (cipher.AEAD, error) {
	m := hmac.New(sha256.New, master)
	m.Write([]byte("mote-file-v1"))
	m.Write(salt)
	m.Write([]byte(key))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func nonce(i uint64, last bool) []byte {
	n := make([]byte, 12)
	binary.BigEndian.PutUint64(n, i)
	if last {
		n[11] = 1
	}
	return n
}

// encReader encrypts src as it is read.
type encReader struct {
	src    io.Reader
	aead   cipher.AEAD
	buf    []byte // plaintext read ahead: up to ChunkSize+1
	out    []byte // ciphertext not yet returned
	i      uint64
	done   bool
	hash   io.Writer // receives the plaintext (nil: none)
	plainN int64
}

func newEncReader(master []byte, key string, src io.Reader, hash io.Writer) (*encReader, error) {
	salt := make([]byte, saltSize)
	rand.Read(salt)
	aead, err := blobAEAD(master, salt, key)
	if err != nil {
		return nil, err
	}
	e := &encReader{src: src, aead: aead, hash: hash, buf: make([]byte, 0, ChunkSize+1)}
	e.out = append([]byte(encMagic), salt...)
	return e, nil
}

func (e *encReader) Read(p []byte) (int, error) {
	for len(e.out) == 0 {
		if e.done {
			return 0, io.EOF
		}
		n, err := io.ReadFull(e.src, e.buf[len(e.buf):ChunkSize+1])
		if n > 0 && e.hash != nil {
			e.hash.Write(e.buf[len(e.buf) : len(e.buf)+n])
		}
		e.plainN += int64(n)
		e.buf = e.buf[:len(e.buf)+n]
		switch {
		case err == nil: // ChunkSize+1 bytes: a full chunk that is not the last
			e.out = e.aead.Seal(e.out[:0], nonce(e.i, false), e.buf[:ChunkSize], nil)
			e.i++
			e.buf[0] = e.buf[ChunkSize]
			e.buf = e.buf[:1]
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			e.out = e.aead.Seal(e.out[:0], nonce(e.i, true), e.buf, nil)
			e.done = true
		default:
			return 0, err
		}
	}
	n := copy(p, e.out)
	e.out = e.out[n:]
	return n, nil
}

// decReader decrypts a blob from plaintext offset off; size is the
// plaintext size the row records.
type decReader struct {
	rc    io.ReadCloser
	aead  cipher.AEAD
	i     uint64
	last  uint64
	skip  int
	chunk []byte
	out   []byte
	done  bool
	size  int64
}

func openDecrypt(ctx context.Context, bs blob.Store, master []byte, key string, size, off int64) (*decReader, error) {
	if off < 0 || off > size {
		return nil, fmt.Errorf("files: offset %d outside 0..%d", off, size)
	}
	if EncryptedSize(size) != mustStat(ctx, bs, key) {
		return nil, fmt.Errorf("%w: %s: blob size does not match the file size %d", ErrDecrypt, key, size)
	}
	hr, err := bs.Get(ctx, key, 0, int64(encHeader))
	if err != nil {
		return nil, err
	}
	h, err := io.ReadAll(hr)
	hr.Close()
	if err != nil {
		return nil, err
	}
	if len(h) != encHeader || !bytes.Equal(h[:len(encMagic)], []byte(encMagic)) {
		return nil, fmt.Errorf("%w: %s: bad header", ErrDecrypt, key)
	}
	aead, err := blobAEAD(master, h[len(encMagic):], key)
	if err != nil {
		return nil, err
	}
	last := uint64(0)
	if size > 0 {
		last = uint64((size - 1) / ChunkSize)
	}
	i := uint64(off / ChunkSize)
	if i > last {
		i = last
	}
	rc, err := bs.Get(ctx, key, int64(encHeader)+int64(i)*(ChunkSize+tagSize), -1)
	if err != nil {
		return nil, err
	}
	return &decReader{rc: rc, aead: aead, i: i, last: last, skip: int(off - int64(i)*ChunkSize), chunk: make([]byte, ChunkSize+tagSize), size: size}, nil
}

func mustStat(ctx context.Context, bs blob.Store, key string) int64 {
	info, err := bs.Stat(ctx, key)
	if err != nil {
		return -1
	}
	return info.Size
}

func (d *decReader) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.done {
			return 0, io.EOF
		}
		want := ChunkSize + tagSize
		if d.i == d.last {
			want = int(d.size-int64(d.last)*ChunkSize) + tagSize
		}
		n, err := io.ReadFull(d.rc, d.chunk[:want])
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, fmt.Errorf("%w: truncated at chunk %d", ErrDecrypt, d.i)
			}
			return 0, err
		}
		pt, err := d.aead.Open(d.chunk[:0], nonce(d.i, d.i == d.last), d.chunk[:n], nil)
		if err != nil {
			return 0, fmt.Errorf("%w: chunk %d", ErrDecrypt, d.i)
		}
		if d.i == d.last {
			d.done = true
		}
		d.i++
		d.out = pt[d.skip:]
		d.skip = 0
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

func (d *decReader) Close() error { return d.rc.Close() }
