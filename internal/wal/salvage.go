package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Offline tools for a damaged log, behind `mote admin journal inspect`
// and `mote admin journal salvage`. Both read whole segments into memory
// (a segment is bounded by Options.SegmentSize) and must run while no Log
// is open on the directory (the server stopped).

// Report describes a log directory as Inspect found it.
type Report struct {
	Dir        string
	Checkpoint uint64 // the last sequence number the consumer declared applied
	Segments   []SegmentReport
}

// SegmentReport describes one segment file.
type SegmentReport struct {
	SegmentInfo
	// Runs are the stretches of valid records in the file, in order: one
	// that starts at offset 0 and ends at Size when the file is intact.
	Runs []Run
	// Lost are the damaged byte ranges between and after the runs.
	Lost []Range
	// Torn: the only damage is a torn tail of the last segment, which the
	// server cuts off by itself at start.
	Torn bool
	// Applied: every record of the segment is at or before the
	// checkpoint; the server neither reads nor needs it (it deletes it at
	// the next checkpoint).
	Applied bool
}

// Run is a stretch of consecutive valid records.
type Run struct {
	Offset, End int64 // byte range in the file
	Records     int
}

// Range is a damaged byte range [Offset, End).
type Range struct{ Offset, End int64 }

// MaxRecords is an upper bound of the records the damaged range held
// (the smallest record takes 8 bytes).
func (r Range) MaxRecords() int64 { return (r.End - r.Offset + 7) / 8 }

// Damaged reports whether the server would refuse to start on the segment.
func (s SegmentReport) Damaged() bool { return len(s.Lost) > 0 && !s.Torn && !s.Applied }

// Valid returns the valid records in the file, damaged stretches skipped.
func (s SegmentReport) Valid() int {
	n := 0
	for _, r := range s.Runs {
		n += r.Records
	}
	return n
}

// Inspect scans every segment of the log in dir and reports its valid
// records and damaged ranges. It changes nothing.
func Inspect(dir string) (*Report, error) {
	l := &Log{dir: dir}
	cp, err := l.Checkpoint()
	if err != nil {
		return nil, err
	}
	segs, err := l.segments()
	if err != nil {
		return nil, err
	}
	rep := &Report{Dir: dir, Checkpoint: cp}
	for i, first := range segs {
		path := filepath.Join(dir, segName(first))
		info, err := scanSegment(path, first, nil)
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("wal: %w", err)
		}
		s := SegmentReport{SegmentInfo: info}
		s.Runs, s.Lost = parseRuns(b)
		s.Torn = i+1 == len(segs) && info.Bad != "" && info.NextValid < 0
		s.Applied = i+1 < len(segs) && segs[i+1] <= cp+1
		rep.Segments = append(rep.Segments, s)
	}
	return rep, nil
}

// parseRuns splits a segment's bytes into runs of valid records and the
// damaged ranges between them.
func parseRuns(b []byte) (runs []Run, lost []Range) {
	pos := 0
	for pos < len(b) {
		run := Run{Offset: int64(pos)}
		for {
			n, ok := validAt(b, pos)
			if !ok {
				break
			}
			run.Records++
			pos += n
		}
		run.End = int64(pos)
		if run.Records > 0 {
			runs = append(runs, run)
		}
		if pos >= len(b) {
			break
		}
		next, err := nextValid(b[pos:], 1)
		if next < 0 || err != nil { // nothing valid after (or too costly to find): lost
			lost = append(lost, Range{int64(pos), int64(len(b))})
			break
		}
		lost = append(lost, Range{int64(pos), int64(pos + next)})
		pos += next
	}
	return runs, lost
}

// SalvageReport says what Salvage did to one damaged segment.
type SalvageReport struct {
	Path    string // the damaged segment
	MovedTo string // where it is now
	Kept    []Kept // the segments written with its valid records
	Lost    []Range
}

// Kept is a segment written by Salvage.
type Kept struct {
	Path        string
	First, Last uint64 // sequence numbers of its records
}

// Salvage moves every damaged segment of the log in dir aside (to
// NAME.corrupt) and writes its valid records to new segments, so that a
// Log opens and replays them. A torn tail of the last segment is left for
// Open to cut off.
//
// Records are numbered by their position, so the records after a damaged
// range get numbers that may be higher than they had (never lower: the
// numbers of the damaged range are counted as the most records it could
// have held) and a consumer that skips what it has applied by number
// never skips one it has not. It may apply again a record that it had
// applied before the damage.
func Salvage(dir string) ([]SalvageReport, error) {
	rep, err := Inspect(dir)
	if err != nil {
		return nil, err
	}
	var out []SalvageReport
	for i, s := range rep.Segments {
		if !s.Damaged() {
			continue
		}
		limit := uint64(0) // the next segment's first number, if any
		if i+1 < len(rep.Segments) {
			limit = rep.Segments[i+1].First
		}
		r, err := salvageSegment(dir, s, limit)
		if err != nil {
			return out, fmt.Errorf("wal: salvage %s: %w", s.Path, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func salvageSegment(dir string, s SegmentReport, limit uint64) (SalvageReport, error) {
	r := SalvageReport{Path: s.Path, Lost: s.Lost}
	b, err := os.ReadFile(s.Path)
	if err != nil {
		return r, err
	}
	// Number the runs: the first from the file's name if it starts the
	// file, each later one after the most records the damage before it
	// could have held, the last of a segment that another follows no
	// later than that segment allows.
	firsts := make([]uint64, len(s.Runs))
	next, pos := s.First, int64(0)
	for k, run := range s.Runs {
		next += uint64(Range{pos, run.Offset}.MaxRecords())
		firsts[k] = next
		next += uint64(run.Records)
		pos = run.End
	}
	if n := len(s.Runs); n > 0 && limit > 0 {
		last := s.Runs[n-1]
		if end := firsts[n-1] + uint64(last.Records); end > limit {
			firsts[n-1] = limit - uint64(last.Records)
		}
		prevEnd := s.First
		if n > 1 {
			prevEnd = firsts[n-2] + uint64(s.Runs[n-2].Records)
		}
		if limit < uint64(last.Records) || firsts[n-1] < prevEnd {
			return r, errors.New("its valid records do not fit before the next segment's numbers; move it aside by hand")
		}
	}
	// Write the new segments under temporary names first.
	var tmps []string
	defer func() {
		for _, t := range tmps {
			_ = os.Remove(t)
		}
	}()
	for k, run := range s.Runs {
		tmp := filepath.Join(dir, segName(firsts[k])+".salvage")
		if err := writeSync(tmp, b[run.Offset:run.End]); err != nil {
			return r, err
		}
		tmps = append(tmps, tmp)
		r.Kept = append(r.Kept, Kept{Path: filepath.Join(dir, segName(firsts[k])),
			First: firsts[k], Last: firsts[k] + uint64(run.Records) - 1})
	}
	r.MovedTo = s.Path + ".corrupt"
	for n := 1; ; n++ {
		if _, err := os.Stat(r.MovedTo); errors.Is(err, os.ErrNotExist) {
			break
		}
		r.MovedTo = fmt.Sprintf("%s.corrupt.%d", s.Path, n)
	}
	if err := os.Rename(s.Path, r.MovedTo); err != nil {
		return r, err
	}
	for k, tmp := range tmps {
		if err := os.Rename(tmp, r.Kept[k].Path); err != nil {
			return r, err
		}
	}
	tmps = nil
	return r, syncDir(dir)
}

func writeSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}
