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
// (little endian), and a checkpoint file.
//
// Damage is told apart at open. A torn tail — an incomplete last write at
// the end of the last segment, what a crash in the middle of a write
// leaves, with no record whose checksum verifies after it — is cut off
// (Open reports how many bytes in TornBytes). A bad record that valid
// records follow, or a bad record or overlap in any segment but the last,
// is corruption: Open returns a *CorruptError naming the file and the byte
// offset and changes nothing; Inspect and Salvage (the `mote admin
// journal` commands) show the damage and keep the valid records.
//
// A failed write or fsync (a full disk) refuses the records of that group
// commit and every append until the log can write again: the writer cuts
// the segment back to the last durable record and retries with a backoff
// (Options.RetryMin doubling to RetryMax), and appends are taken again
// once a probe write succeeds. Err reports the failure meanwhile.
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
	"sync/atomic"
	"time"
)

// MaxRecord is the largest record accepted; an empty one is not.
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

	// RetryMin and RetryMax bound the wait between attempts to write again
	// after a write or fsync failed: RetryMin, doubling up to RetryMax
	// (defaults 100ms and 5s).
	RetryMin, RetryMax time.Duration
	// OnWriteError, if set, is called on the writer goroutine when a write,
	// an fsync or an attempt to write again fails; first is true for the
	// first failure after writes worked. retryIn is the wait before the
	// next attempt.
	OnWriteError func(err error, first bool, retryIn time.Duration)
	// OnRecovered, if set, is called when the log writes again after a
	// failure, with how long it could not.
	OnRecovered func(down time.Duration)
}

// ErrClosed is returned by appends after Close.
var ErrClosed = errors.New("wal: closed")

// ErrStorage wraps the error of appends refused because the log cannot
// write to its disk (a write or fsync failed: a full disk, an I/O error).
// The log retries by itself and takes appends again once it can write.
var ErrStorage = errors.New("wal: cannot write to the disk")

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
	writeErr error  // set while writes fail: appends are refused until the writer recovers

	seg      *os.File // current segment, opened for append; nil while the writer repairs it
	segBytes int64
	segFirst uint64
	w        *bufio.Writer

	// The end of the last durable record, where a failed write is cut
	// back to: owned by the writer goroutine.
	goodFirst uint64
	goodBytes int64

	tornBytes int64 // cut off the last segment at Open
	fault     atomic.Pointer[func(op string) error]

	closing chan struct{} // closed by Close: ends the writer's retry wait
	done    chan struct{}
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
	if o.RetryMin <= 0 {
		o.RetryMin = 100 * time.Millisecond
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(5*time.Second, o.RetryMin)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	l := &Log{dir: dir, opts: o, closing: make(chan struct{}), done: make(chan struct{})}
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
		// Check every segment that may hold a record not yet applied
		// before changing anything.
		applied := max(o.After, next-1)
		infos, err := checkSegments(dir, segs, applied)
		if err != nil {
			return nil, err
		}
		last := segs[len(segs)-1]
		info := infos[len(infos)-1]
		n, size := info.Records, info.Good
		if info.Size > size {
			// A torn tail: cut off whatever follows the last good record.
			if err := os.Truncate(info.Path, size); err != nil {
				return nil, fmt.Errorf("wal: truncate torn tail of %s: %w", info.Path, err)
			}
			if !o.NoSync {
				if err := syncFile(info.Path); err != nil {
					return nil, fmt.Errorf("wal: truncate torn tail: %w", err)
				}
			}
			l.tornBytes = info.Size - size
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
	l.goodFirst, l.goodBytes = l.segFirst, l.segBytes
	go l.writer()
	return l, nil
}

// TornBytes returns how many bytes of a torn tail Open cut off the last
// segment (0: none).
func (l *Log) TornBytes() int64 { return l.tornBytes }

// Err returns the error that makes the log refuse appends while its
// writes fail (wrapping ErrStorage), or nil when it writes.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writeErr
}

// SetFault installs a fault hook for tests: fn is called before every
// write to a segment ("write") and every fsync of one ("sync"), and an
// error it returns fails that operation as a full disk would (a failed
// write writes half of its bytes first). nil removes the hook.
func (l *Log) SetFault(fn func(op string) error) {
	if fn == nil {
		l.fault.Store(nil)
		return
	}
	l.fault.Store(&fn)
}

func (l *Log) faultFor(op string) error {
	if fn := l.fault.Load(); fn != nil {
		return (*fn)(op)
	}
	return nil
}

// segWriter writes to the current segment through the fault hook.
type segWriter struct{ l *Log }

func (w segWriter) Write(p []byte) (int, error) {
	if err := w.l.faultFor("write"); err != nil {
		n, _ := w.l.seg.Write(p[:len(p)/2])
		return n, err
	}
	return w.l.seg.Write(p)
}

func (l *Log) syncSeg() error {
	if err := l.faultFor("sync"); err != nil {
		return err
	}
	return l.seg.Sync()
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
	l.w = bufio.NewWriterSize(segWriter{l}, 256<<10)
	l.mu.Unlock()
	return nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	return errors.Join(err, f.Close())
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
	if len(rec) == 0 {
		return nil, errors.New("wal: empty record") // zeroed bytes on disk must not read as records
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
		for len(l.pending) == 0 && !l.closed && l.writeErr == nil {
			l.cond.Wait()
		}
		if l.writeErr != nil {
			l.mu.Unlock()
			if !l.recover() {
				return // closed while failing
			}
			continue
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

		if err := l.writeBatch(batch, hdr[:]); err != nil {
			l.failed(batch, err)
			continue
		}
		l.goodFirst, l.goodBytes = l.segFirst, l.segBytes
		l.mu.Lock()
		l.lastSeq = batch[len(batch)-1].seq
		l.mu.Unlock()
		if l.opts.OnDurable != nil {
			for _, r := range batch {
				l.opts.OnDurable(r.seq, r.rec)
			}
		}
		for _, r := range batch {
			r.done <- nil
		}
	}
}

// failed refuses the batch whose write failed and every pending append,
// gives their sequence numbers back (none of them is durable) and makes
// the log refuse appends until recover succeeds.
func (l *Log) failed(batch []*request, err error) {
	err = fmt.Errorf("%w: %w", ErrStorage, err)
	l.mu.Lock()
	l.writeErr = err
	rest := l.pending
	l.pending = nil
	l.nextSeq = l.lastSeq + 1
	l.mu.Unlock()
	for _, r := range batch {
		r.done <- err
	}
	for _, r := range rest {
		r.done <- err
	}
}

// recover waits, cuts the log back to its last durable record and probes
// whether the disk takes writes again, with a growing wait between
// attempts, until it does (true) or the log is closed (false).
func (l *Log) recover() bool {
	start := time.Now()
	delay := l.opts.RetryMin
	err, first := l.Err(), true
	for {
		if l.opts.OnWriteError != nil {
			l.opts.OnWriteError(err, first, delay)
		}
		first = false
		t := time.NewTimer(delay)
		select {
		case <-l.closing:
			t.Stop()
			return false
		case <-t.C:
		}
		if err = l.repair(); err == nil {
			break
		}
		err = fmt.Errorf("%w: %w", ErrStorage, err)
		delay = min(2*delay, l.opts.RetryMax)
	}
	l.mu.Lock()
	l.writeErr = nil
	l.mu.Unlock()
	if l.opts.OnRecovered != nil {
		l.opts.OnRecovered(time.Since(start))
	}
	return true
}

// repair reopens the segment of the last durable record cut back to its
// end — a failed write may have left part of a record, and a roll during
// it a new segment — and checks with a probe file that the disk takes a
// write and an fsync.
func (l *Log) repair() error {
	if l.seg != nil {
		_ = l.seg.Close() // what it holds past goodBytes is cut off below
		l.mu.Lock()
		l.seg = nil
		l.mu.Unlock()
	}
	segs, err := l.segments()
	if err != nil {
		return err
	}
	for _, first := range segs {
		if first > l.goodFirst {
			if err := os.Remove(filepath.Join(l.dir, segName(first))); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("wal: remove the segment of a failed write: %w", err)
			}
		}
	}
	path := filepath.Join(l.dir, segName(l.goodFirst))
	if err := os.Truncate(path, l.goodBytes); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("wal: cut back a failed write: %w", err)
	}
	if err := l.probe(); err != nil {
		return err
	}
	if err := l.openSegment(l.goodFirst, l.goodBytes); err != nil {
		return err
	}
	if l.opts.NoSync {
		return nil
	}
	if err := l.syncSeg(); err != nil {
		return fmt.Errorf("wal: sync: %w", err)
	}
	return nil
}

// probeSize is what repair writes to check that the disk has room again:
// at least a full bufio buffer of records.
const probeSize = 256 << 10

func (l *Log) probe() error {
	if err := l.faultFor("write"); err != nil {
		return fmt.Errorf("wal: probe write: %w", err)
	}
	path := filepath.Join(l.dir, "probe.tmp")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("wal: probe: %w", err)
	}
	_, err = f.Write(make([]byte, probeSize))
	if err == nil && !l.opts.NoSync {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close(), os.Remove(path))
	if err != nil {
		return fmt.Errorf("wal: probe write: %w", err)
	}
	return nil
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
			return fmt.Errorf("write: %w", err)
		}
		if _, err := l.w.Write(r.rec); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		l.segBytes += int64(len(hdr) + len(r.rec))
	}
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if l.opts.NoSync {
		return nil
	}
	if err := l.syncSeg(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// roll closes the current segment and starts one whose first record is seq.
func (l *Log) roll(seq uint64) error {
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("roll: write: %w", err)
	}
	if !l.opts.NoSync {
		if err := l.syncSeg(); err != nil {
			return fmt.Errorf("roll: sync: %w", err)
		}
	}
	if err := l.seg.Close(); err != nil {
		return fmt.Errorf("roll: close: %w", err)
	}
	l.seg = nil
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
	close(l.closing)
	l.mu.Unlock()
	<-l.done
	if l.seg == nil {
		return nil // closed while writes failed: nothing to flush
	}
	if l.Err() != nil {
		return l.seg.Close()
	}
	err := l.w.Flush()
	if !l.opts.NoSync {
		err = errors.Join(err, l.seg.Sync())
	}
	return errors.Join(err, l.seg.Close())
}

// Replay calls fn for every durable record with a sequence number greater
// than after, in order. It reads the files, so it may run while appends go
// on; it stops at the end of what was on disk when it reached it. A bad
// record in a segment other than the last is a *CorruptError.
func (l *Log) Replay(after uint64, fn func(seq uint64, rec []byte) error) error {
	segs, err := l.segments()
	if err != nil {
		return err
	}
	for i, first := range segs {
		if i+1 < len(segs) && segs[i+1] <= after+1 {
			continue // every record of this segment is at or before after
		}
		info, err := scanSegment(filepath.Join(l.dir, segName(first)), first, func(seq uint64, rec []byte) error {
			if seq <= after {
				return nil
			}
			return fn(seq, rec)
		})
		if err != nil {
			return err
		}
		// The last segment may end in a record being written now.
		if i+1 < len(segs) && info.Bad != "" {
			return &CorruptError{Path: info.Path, Offset: info.Good, Reason: info.Bad}
		}
	}
	return nil
}

// CorruptError reports damage that is not a torn tail: a bad record that
// valid records follow, or one in a segment other than the last. Open
// changes nothing when it returns one.
type CorruptError struct {
	Path   string // the segment file
	Offset int64  // byte offset of the first bad record
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: %s is damaged at byte offset %d: %s", e.Path, e.Offset, e.Reason)
}

// SegmentInfo describes one segment file as a scan found it.
type SegmentInfo struct {
	Path    string
	First   uint64 // sequence number of its first record (from its name)
	Size    int64  // bytes in the file
	Records int    // valid records before the first bad byte
	Good    int64  // bytes those records take: the offset of the first bad byte
	Bad     string // why the record at Good is bad; "" if the file ends at Good
	// NextValid is the offset of the first record after Good whose
	// checksum verifies, or -1: with one, the damage is corruption, not a
	// torn write. Size when the search gave up (treated as corruption).
	NextValid int64
}

// checkSegments scans the segments that may hold records after applied
// and returns what it found of each, the last always included: a
// *CorruptError for damage other than a torn tail of the last segment.
func checkSegments(dir string, segs []uint64, applied uint64) ([]SegmentInfo, error) {
	var infos []SegmentInfo
	for i, first := range segs {
		last := i+1 == len(segs)
		if !last && segs[i+1] <= applied+1 {
			continue // every record of this segment is applied
		}
		info, err := scanSegment(filepath.Join(dir, segName(first)), first, nil)
		if err != nil {
			return nil, err
		}
		switch {
		case info.Bad != "" && !last:
			return nil, &CorruptError{Path: info.Path, Offset: info.Good, Reason: info.Bad + " (not the last segment)"}
		case info.Bad != "" && info.NextValid >= 0:
			return nil, &CorruptError{Path: info.Path, Offset: info.Good,
				Reason: fmt.Sprintf("%s, and a valid record follows at offset %d", info.Bad, info.NextValid)}
		case !last && first+uint64(info.Records) > segs[i+1]:
			return nil, &CorruptError{Path: info.Path, Offset: info.Good,
				Reason: fmt.Sprintf("it holds %d records from %d but the next segment starts at %d", info.Records, first, segs[i+1])}
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// scanSegment reads the good records of a segment, calling fn (if not nil)
// for each, up to the first bad one; a bad record is reported in the
// SegmentInfo, not as an error, with where the next valid record starts.
func scanSegment(path string, first uint64, fn func(seq uint64, rec []byte) error) (SegmentInfo, error) {
	info := SegmentInfo{Path: path, First: first, NextValid: -1}
	f, err := os.Open(path)
	if err != nil {
		return info, fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return info, fmt.Errorf("wal: %w", err)
	}
	info.Size = st.Size()
	r := bufio.NewReaderSize(f, 256<<10)
	var (
		hdr [8]byte
		buf []byte
	)
	for {
		if k, err := io.ReadFull(r, hdr[:]); err != nil {
			if k > 0 {
				info.Bad = "incomplete record header"
			}
			break
		}
		length := binary.LittleEndian.Uint32(hdr[0:4])
		sum := binary.LittleEndian.Uint32(hdr[4:8])
		if length == 0 {
			info.Bad = "record length 0 (zeroed bytes)"
			break
		}
		if length > MaxRecord {
			info.Bad = fmt.Sprintf("record length %d exceeds %d", length, MaxRecord)
			break
		}
		if cap(buf) < int(length) {
			buf = make([]byte, length)
		}
		buf = buf[:length]
		if _, err := io.ReadFull(r, buf); err != nil {
			info.Bad = fmt.Sprintf("record of %d bytes ends past the end of the file", length)
			break
		}
		if crc32.Checksum(buf, castagnoli) != sum {
			info.Bad = "checksum mismatch"
			break
		}
		if fn != nil {
			if err := fn(first+uint64(info.Records), buf); err != nil {
				return info, err
			}
		}
		info.Records++
		info.Good += int64(8 + length)
	}
	if info.Bad == "" {
		return info, nil
	}
	// Look for a valid record after the bad one: read the rest of the
	// file (a segment is bounded) and try every offset.
	rest := make([]byte, info.Size-info.Good)
	if _, err := f.ReadAt(rest, info.Good); err != nil && !errors.Is(err, io.EOF) {
		return info, fmt.Errorf("wal: %w", err)
	}
	k, err := nextValid(rest, 1)
	switch {
	case err != nil:
		// Could not tell: report it as corruption, never cut it off.
		info.Bad += " (" + err.Error() + ")"
		info.NextValid = info.Size
	case k >= 0:
		info.NextValid = info.Good + int64(k)
	}
	return info, nil
}

// validAt reports whether a record whose checksum verifies starts at b[k:],
// and its size. Records are never empty: zeroes (what a file system may
// leave after a crash) would pass as empty records.
func validAt(b []byte, k int) (int, bool) {
	if k < 0 || len(b)-k < 9 {
		return 0, false
	}
	length := int(binary.LittleEndian.Uint32(b[k:]))
	if length == 0 || length > MaxRecord || length > len(b)-k-8 {
		return 0, false
	}
	if crc32.Checksum(b[k+8:k+8+length], castagnoli) != binary.LittleEndian.Uint32(b[k+4:]) {
		return 0, false
	}
	return 8 + length, true
}

// nextValid returns the first offset at or after from where a valid record
// starts in b, or -1. A damaged record whose length field is intact is
// followed by a record at the offset the length gives: that is tried
// first. Checking a candidate costs a CRC over its length, so garbage full
// of plausible lengths could take long: past a budget of checksummed
// bytes the search gives up and returns errScanBudget, which callers
// treat as damage with valid records after it (the safe side).
func nextValid(b []byte, from int) (int, error) {
	if len(b) >= 8 {
		if skip := int(binary.LittleEndian.Uint32(b)) + 8; skip >= from && skip < len(b) {
			if _, ok := validAt(b, skip); ok {
				return skip, nil
			}
		}
	}
	budget := 16*len(b) + 64<<20
	for k := from; k+9 <= len(b); k++ {
		length := int(binary.LittleEndian.Uint32(b[k:]))
		if length == 0 || length > MaxRecord || length > len(b)-k-8 {
			continue // cheap: no checksum to compute
		}
		if budget -= length; budget < 0 {
			return -1, errScanBudget
		}
		if _, ok := validAt(b, k); ok {
			return k, nil
		}
	}
	return -1, nil
}

// errScanBudget: nextValid gave up looking for a valid record.
var errScanBudget = errors.New("too many candidate records to check; treated as damaged")

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
	if err := writeFileSync(l.dir, checkpointFile, []byte(strconv.FormatUint(seq, 10)+"\n"), !l.opts.NoSync); err != nil {
		return fmt.Errorf("wal: checkpoint: %w", err)
	}
	segs, err := l.segments()
	if err != nil {
		return err
	}
	l.mu.Lock()
	current := l.segFirst
	l.mu.Unlock()
	var errs []error
	for i, first := range segs {
		if first == current || i+1 >= len(segs) {
			break
		}
		if segs[i+1]-1 <= seq { // the whole segment is applied
			if err := os.Remove(filepath.Join(l.dir, segName(first))); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("wal: remove applied segment: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// writeFileSync replaces dir/name with data atomically: a temporary file,
// fsynced, renamed over it, and the directory fsynced so that the rename
// survives a crash.
func writeFileSync(dir, name string, data []byte, sync bool) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	if sync {
		return syncDir(dir)
	}
	return nil
}
