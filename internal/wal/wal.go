// Package wal is Mote's write-ahead log: the durable queue between a
// device's QoS 1 publish and the services that store it. The broker appends
// a message and sends the PUBACK only when the append is on disk; the
// consumer (the telemetry store) applies records and checkpoints the last
// sequence number it made durable itself, and after a crash everything
// after the checkpoint is replayed.
//
// Appends are group-committed: one goroutine writes whatever is pending
// and fsyncs once for all of it, so the cost of an fsync is shared by every
// publisher waiting at that moment.
//
// On disk: numbered segment files (00000000000000000001.wal, named by
// their first sequence number), each a series of records
//
//	uint32 length | uint32 CRC-32C of payload | payload
//
// (little endian), and a checkpoint file. A torn or corrupt tail — what a
// crash in the middle of a write leaves — is cut off at open.
package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxRecord is the largest record accepted.
const MaxRecord = 16 << 20

// Options tune a Log. Zero values take the defaults.
type Options struct {
	SegmentSize int64         // start a new segment after this many bytes (default 64 MiB)
	MaxBatch    int           // most records written per fsync (default 4096)
	MaxDelay    time.Duration // longest an append waits for others to share its fsync (default 0: write as soon as the writer is free)
	NoSync      bool          // skip fsync (tests and benchmarks of everything else only)

	// After is the last sequence number the consumer has applied, as the
	// consumer itself recorded it: numbering continues after it even if
	// the log's files were lost, so a number is never handed out twice.
	After uint64

	// OnDurable, if set, is called for every record once it is durable, in
	// sequence order, on the log's writer goroutine and before the Append
	// of that record returns. It may block — that holds back the appends
	// that follow, which is how a slow consumer slows its producers — but
	// must not call Append. It must not keep rec past its return unless
	// the appender handed over ownership (Mote's journal does).
	OnDurable func(seq uint64, rec []byte)
}

// ErrClosed is returned by appends after Close.
var ErrClosed = errors.New("wal: closed")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Log is a write-ahead log in one directory.
type Log struct {
	dir  string
	opts Options

	mu       sync.Mutex
	cond     *sync.Cond
	pending  []*request
	closed   bool
	nextSeq  uint64 // sequence number of the next record
	lastSeq  uint64 // last record that is durable
	writeErr error  // sticky: after a failed write or fsync the log refuses appends

	seg      *os.File // current segment, opened for append
	segBytes int64
	segFirst uint64
	w        *bufio.Writer

	done chan struct{}
}

type request struct {
	rec  []byte
	seq  uint64
	done chan error
}

// Open opens (or creates) the log in dir, cutting off a torn tail.
func Open(dir string, o Options) (*Log, error) {
	if o.SegmentSize <= 0 {
		o.SegmentSize = 64 << 20
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 4096
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	l := &Log{dir: dir, opts: o, done: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	segs, err := l.segments()
	if err != nil {
		return nil, err
	}
	next := o.After + 1
	if cp, err := l.Checkpoint(); err != nil {
		return nil, err
	} else if cp >= next {
		next = cp + 1
	}
	if len(segs) > 0 {
		last := segs[len(segs)-1]
		n, size, err := scanSegment(filepath.Join(dir, segName(last)), last, nil)
		if err != nil {
			return nil, err
		}
		// Cut off whatever follows the last good record.
		if err := os.Truncate(filepath.Join(dir, segName(last)), size); err != nil {
			return nil, fmt.Errorf("wal: truncate torn tail: %w", err)
		}
		end := last + uint64(n) // sequence number after the last record
		if end >= next {
			next = end
			if err := l.openSegment(last, size); err != nil {
				return nil, err
			}
		} else if err := l.openSegment(next, 0); err != nil {
			// The checkpoint is ahead of the log's end (its segments were
			// removed): numbering continues in a new segment.
			return nil, err
		}
	} else if err := l.openSegment(next, 0); err != nil {
		return nil, err
	}
	l.nextSeq = next
	l.lastSeq = next - 1
	go l.writer()
	return l, nil
}

func segName(first uint64) string { return fmt.Sprintf("%020d.wal", first) }

// segments returns the first sequence numbers of the segment files, in order.
func (l *Log) segments() ([]uint64, error) {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	var out []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".wal")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

func (l *Log) openSegment(first uint64, size int64) error {
	f, err := os.OpenFile(filepath.Join(l.dir, segName(first)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	if size == 0 && !l.opts.NoSync {
		if err := syncDir(l.dir); err != nil {
			_ = f.Close()
			return err
		}
	}
	l.mu.Lock() // SetCheckpoint reads segFirst
	l.seg, l.segBytes, l.segFirst = f, size, first
	l.w = bufio.NewWriterSize(f, 256<<10)
	l.mu.Unlock()
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("wal: sync dir: %w", err)
	}
	return nil
}

// Append adds a record and returns its sequence number once it is durable
// (written and fsynced).
func (l *Log) Append(rec []byte) (uint64, error) {
	r, err := l.enqueue(rec)
	if err != nil {
		return 0, err
	}
	return r.seq, <-r.done
}

// AppendAsync adds a record and returns its sequence number at once, and a
// channel that receives nil when the record is durable (or the error).
func (l *Log) AppendAsync(rec []byte) (uint64, <-chan error, error) {
	r, err := l.enqueue(rec)
	if err != nil {
		return 0, nil, err
	}
	return r.seq, r.done, nil
}

func (l *Log) enqueue(rec []byte) (*request, error) {
	if len(rec) > MaxRecord {
		return nil, fmt.Errorf("wal: record of %d bytes exceeds %d", len(rec), MaxRecord)
	}
	r := &request{rec: rec, done: make(chan error, 1)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	if l.writeErr != nil {
		return nil, l.writeErr
	}
	r.seq = l.nextSeq
	l.nextSeq++
	l.pending = append(l.pending, r)
	l.cond.Signal()
	return r, nil
}

// writer is the group-commit loop.
func (l *Log) writer() {
	defer close(l.done)
	var hdr [8]byte
	for {
		l.mu.Lock()
		for len(l.pending) == 0 && !l.closed {
			l.cond.Wait()
		}
		if len(l.pending) == 0 && l.closed {
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		if l.opts.MaxDelay > 0 {
			time.Sleep(l.opts.MaxDelay)
		}
		l.mu.Lock()
		n := min(len(l.pending), l.opts.MaxBatch)
		batch := slices.Clone(l.pending[:n])
		l.pending = slices.Delete(l.pending, 0, n)
		l.mu.Unlock()

		err := l.writeBatch(batch, hdr[:])
		l.mu.Lock()
		if err != nil && l.writeErr == nil {
			l.writeErr = fmt.Errorf("wal: write failed, refusing appends: %w", err)
		} else if err == nil {
			l.lastSeq = batch[len(batch)-1].seq
		}
		l.mu.Unlock()
		if err == nil && l.opts.OnDurable != nil {
			for _, r := range batch {
				l.opts.OnDurable(r.seq, r.rec)
			}
		}
		for _, r := range batch {
			r.done <- err
		}
	}
}

func (l *Log) writeBatch(batch []*request, hdr []byte) error {
	for _, r := range batch {
		if l.segBytes >= l.opts.SegmentSize {
			if err := l.roll(r.seq); err != nil {
				return err
			}
		}
		binary.LittleEndian.PutUint32(hdr[0:4], uint32(len(r.rec)))
		binary.LittleEndian.PutUint32(hdr[4:8], crc32.Checksum(r.rec, castagnoli))
		if _, err := l.w.Write(hdr); err != nil {
			return err
		}
		if _, err := l.w.Write(r.rec); err != nil {
			return err
		}
		l.segBytes += int64(len(hdr) + len(r.rec))
	}
	if err := l.w.Flush(); err != nil {
		return err
	}
	if l.opts.NoSync {
		return nil
	}
	return l.seg.Sync()
}

// roll closes the current segment and starts one whose first record is seq.
func (l *Log) roll(seq uint64) error {
	if err := l.w.Flush(); err != nil {
		return err
	}
	if !l.opts.NoSync {
		if err := l.seg.Sync(); err != nil {
			return err
		}
	}
	if err := l.seg.Close(); err != nil {
		return err
	}
	return l.openSegment(seq, 0)
}

// LastSeq returns the sequence number of the last durable record (0 if none).
func (l *Log) LastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastSeq
}

// Close waits for pending appends to be written and closes the log.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.cond.Signal()
	l.mu.Unlock()
	<-l.done
	err := l.w.Flush()
	if !l.opts.NoSync {
		err = errors.Join(err, l.seg.Sync())
	}
	return errors.Join(err, l.seg.Close())
}

// Replay calls fn for every durable record with a sequence number greater
// than after, in order. It reads the files, so it may run while appends go
// on; it stops at the end of what was on disk when it reached it.
func (l *Log) Replay(after uint64, fn func(seq uint64, rec []byte) error) error {
	segs, err := l.segments()
	if err != nil {
		return err
	}
	for i, first := range segs {
		if i+1 < len(segs) && segs[i+1] <= after+1 {
			continue // every record of this segment is at or before after
		}
		_, _, err := scanSegment(filepath.Join(l.dir, segName(first)), first, func(seq uint64, rec []byte) error {
			if seq <= after {
				return nil
			}
			return fn(seq, rec)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// scanSegment reads the good records of a segment, calling fn (if not nil)
// for each, and returns their count and the byte size they take: a torn or
// corrupt tail ends the scan without an error.
func scanSegment(path string, first uint64, fn func(seq uint64, rec []byte) error) (int, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 256<<10)
	var (
		hdr  [8]byte
		n    int
		size int64
		buf  []byte
	)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return n, size, nil // clean end, or a torn header
		}
		length := binary.LittleEndian.Uint32(hdr[0:4])
		sum := binary.LittleEndian.Uint32(hdr[4:8])
		if length > MaxRecord {
			return n, size, nil
		}
		if cap(buf) < int(length) {
			buf = make([]byte, length)
		}
		buf = buf[:length]
		if _, err := io.ReadFull(r, buf); err != nil {
			return n, size, nil
		}
		if crc32.Checksum(buf, castagnoli) != sum {
			return n, size, nil
		}
		if fn != nil {
			if err := fn(first+uint64(n), buf); err != nil {
				return n, size, err
			}
		}
		n++
		size += int64(8 + length)
	}
}

const checkpointFile = "checkpoint"

// Checkpoint returns the last sequence number a consumer declared applied
// (0 if none).
func (l *Log) Checkpoint() (uint64, error) {
	b, err := os.ReadFile(filepath.Join(l.dir, checkpointFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("wal: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("wal: corrupt checkpoint file: %w", err)
	}
	return n, nil
}

// SetCheckpoint records that every record up to seq has been applied
// durably by the consumer, and deletes the segments that hold only such
// records.
func (l *Log) SetCheckpoint(seq uint64) error {
	tmp := filepath.Join(l.dir, checkpointFile+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(seq, 10)+"\n"), 0o600); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	if !l.opts.NoSync {
		if f, err := os.Open(tmp); err == nil {
			_ = f.Sync()
			_ = f.Close()
		}
	}
	if err := os.Rename(tmp, filepath.Join(l.dir, checkpointFile)); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	segs, err := l.segments()
	if err != nil {
		return err
	}
	l.mu.Lock()
	current := l.segFirst
	l.mu.Unlock()
	for i, first := range segs {
		if first == current || i+1 >= len(segs) {
			break
		}
		if segs[i+1]-1 <= seq { // the whole segment is applied
			_ = os.Remove(filepath.Join(l.dir, segName(first)))
		}
	}
	return nil
}
