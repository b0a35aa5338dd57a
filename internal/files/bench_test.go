package files

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"testing"

	"github.com/moteiot/mote/internal/blob/fsblob"
)

// BenchmarkEncryptStream: the chunked AES-GCM at-rest format, encrypting
// 4 MiB as a reader (what a piece's upload pays on top of the disk).
func BenchmarkEncryptStream(b *testing.B) {
	key := make([]byte, KeySize)
	data := make([]byte, 4<<20)
	rand.Read(data)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		e, err := newEncReader(key, "files/x/y", bytes.NewReader(data), nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutAndRead: a 4 MiB file through fsblob (fsync included) and
// back, decrypted.
func BenchmarkPutAndRead(b *testing.B) {
	bs, err := fsblob.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	key := make([]byte, KeySize)
	data := make([]byte, 4<<20)
	rand.Read(data)
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		e, _ := newEncReader(key, "files/x/y", bytes.NewReader(data), nil)
		if _, err := bs.Put(ctx, "files/x/y", e, 0); err != nil {
			b.Fatal(err)
		}
		d, err := openDecrypt(ctx, bs, key, "files/x/y", int64(len(data)), 0)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, d); err != nil || n != int64(len(data)) {
			b.Fatal(n, err)
		}
		d.Close()
	}
}
