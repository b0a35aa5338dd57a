// Package telemetry turns the JSON that devices publish into time series
// and keeps them: one series per thing and key, queried by time range, as
// downsampled aggregates, or for the latest value.
//
// # From a message to points
//
// A telemetry message is a JSON object. Flatten turns it into fields, and
// each field becomes one point of the series (thing, key):
//
//	{"ts": 1718000000000, "temp": 21.5, "env": {"hum": 40, "door": "open"},
//	 "ok": true, "acc": [0.1, 0.2], "note": null}
//
// gives, at time 1718000000000 (2024-06-10T06:13:20Z):
//
//	temp      21.5
//	env.hum   40
//	env.door  "open"
//	ok        true
//	acc.0     0.1
//	acc.1     0.2
//
// The rules:
//
//   - The payload must be one JSON object; anything else (an array, a
//     number, invalid JSON) is refused with an error.
//   - Nested objects are flattened to dotted keys: {"env":{"temp":21}} gives
//     env.temp. A member name may itself contain dots ({"env.temp":21} is
//     the same key). Member names must not be empty, start or end with a
//     dot, or hold two dots in a row, so every key is a path of non-empty
//     names.
//   - Arrays are flattened by index: {"a":[5,6]} gives a.0 and a.1. An
//     array may have at most MaxArrayLen (64) elements.
//   - Values are numbers (64-bit floats: integers beyond 2⁵³ lose
//     precision, numbers beyond ±1.8e308 are refused), booleans and
//     strings. null values are skipped, as are empty objects and arrays.
//   - A member that appears twice (or two spellings of one key, such as
//     {"a":{"b":1},"a.b":2}) keeps its last value.
//   - The time of the points is the top-level member "ts" if present —
//     milliseconds since the Unix epoch as a number (a fraction is cut
//     off), or an RFC 3339 string such as "2024-06-10T06:13:20.5Z" — and
//     otherwise the time the server received the message. "ts" is not
//     stored as a field; a "ts" inside a nested object is an ordinary
//     field. A ts of null counts as absent. Times must lie between
//     1970-01-01 and 9999-12-31.
//   - Limits: at most MaxFields (256) values per message, keys (the whole
//     dotted path) of at most MaxKeyLen (256) bytes, strings of at most
//     MaxStringLen (4 KiB). A message beyond a limit is refused as a whole,
//     with an error that names the key; nothing of it is stored.
//
// Timestamps are Unix milliseconds (int64) throughout. Two points of one
// series may have the same timestamp; both are kept, in the order they
// were appended.
//
// # Queries
//
// Every query names the things it reads (1 to MaxQueryThings) and
// optionally the keys (none means all keys of those things) and a time
// range from <= ts < to.
//
//   - Range returns the raw points ordered by thing, key and time, a page of
//     at most Limit (1 to MaxLimit) points at a time, with an opaque cursor
//     for the next page ("" on the last page).
//   - Latest returns the newest point of each series.
//   - Aggregate divides time into buckets of Interval (at least one
//     second), aligned to the Unix epoch (a bucket of one hour starts on
//     the hour, UTC), and returns per series and bucket one of min, max,
//     avg, sum, count, first or last. All but count work on the numbers of
//     the bucket and ignore booleans and strings; count counts every value.
//     first and last are the values with the earliest and the latest
//     timestamp (of points with the same timestamp, the first and the last
//     appended). A bucket is reported by its start, which may lie before
//     from; only points from from on count. A bucket without a value to
//     aggregate is left out. A query may span at most MaxBuckets buckets.
//
// Invalid queries fail with a core.KindInvalid error naming the field.
//
// # Exactly once
//
// Points arrive through the write-ahead log (internal/wal), where every
// message has a sequence number. A Store records, in the same transaction
// as the points, the sequence number of the last message they came from
// (Store.LastSeq). After a crash the log replays what follows LastSeq, and
// an Append whose sequence number is not above LastSeq stores nothing, so
// no message is stored twice or lost. The Writer batches the points of
// many messages into one transaction. The retention loop (RunRetention)
// deletes points older than a configured age.
package telemetry

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// Limits of a telemetry message (see Flatten) and of the store.
const (
	MaxFields    = 256  // values per message
	MaxKeyLen    = 256  // bytes of a key (the dotted path)
	MaxStringLen = 4096 // bytes of a string value
	MaxArrayLen  = 64   // elements of one array
)

// Limits of queries.
const (
	MaxLimit       = 10000       // points per Range page
	MaxBuckets     = 10000       // buckets per Aggregate query
	MaxQueryThings = 1000        // things per query
	MaxQueryKeys   = 1000        // keys per query
	MinInterval    = time.Second // smallest Aggregate interval
)

// MaxTS is the largest timestamp a point may have: 9999-12-31T23:59:59.999Z.
// The smallest is 0 (1970-01-01T00:00:00Z).
const MaxTS int64 = 253402300799999

// Point is one value of the series (Thing, Key) at TS (Unix milliseconds).
type Point struct {
	Thing string `json:"thing"`
	Key   string `json:"key"`
	TS    int64  `json:"ts"`
	Value Value  `json:"value"`
}

// Field is one flattened value of a message: the key and its value.
type Field struct {
	Key   string
	Value Value
}

// RangeQuery selects raw points for Store.Range.
type RangeQuery struct {
	Things []string // 1 to MaxQueryThings thing names
	Keys   []string // keys to read; empty: every key of the things
	From   int64    // inclusive, Unix ms
	To     int64    // exclusive, Unix ms
	Limit  int      // page size, 1 to MaxLimit
	Cursor string   // from the previous page; "" for the first
}

// AggFunc names an aggregate function.
type AggFunc string

// The aggregate functions.
const (
	AggMin   AggFunc = "min"
	AggMax   AggFunc = "max"
	AggAvg   AggFunc = "avg"
	AggSum   AggFunc = "sum"
	AggCount AggFunc = "count"
	AggFirst AggFunc = "first"
	AggLast  AggFunc = "last"
)

// AggFuncs lists the aggregate functions.
var AggFuncs = []AggFunc{AggMin, AggMax, AggAvg, AggSum, AggCount, AggFirst, AggLast}

// AggQuery selects buckets for Store.Aggregate.
type AggQuery struct {
	Things   []string      // 1 to MaxQueryThings thing names
	Keys     []string      // keys to read; empty: every key of the things
	From     int64         // inclusive, Unix ms
	To       int64         // exclusive, Unix ms
	Interval time.Duration // bucket width: at least MinInterval, whole milliseconds
	Func     AggFunc
}

// Bucket is one aggregated value: Func over the values of the series
// (Thing, Key) with TS <= ts < TS+Interval (and From <= ts < To).
type Bucket struct {
	Thing string  `json:"thing"`
	Key   string  `json:"key"`
	TS    int64   `json:"ts"` // start of the bucket, a multiple of the interval
	Value float64 `json:"value"`
}

// Store keeps time series. Implementations are safe for concurrent use.
type Store interface {
	// Append stores points and records seq (the WAL sequence number of the
	// last message they came from) in the same transaction, so replay
	// after a crash can skip what is already stored. Appending with
	// 0 < seq <= LastSeq() stores nothing and returns nil (exactly once).
	// seq 0 means the points do not come from the WAL: they are stored and
	// LastSeq is unchanged. Either all points are stored or none. Points
	// must be valid (ValidatePoints) or Append fails with a KindInvalid
	// error and stores nothing.
	Append(ctx context.Context, points []Point, seq uint64) error
	// LastSeq returns the largest seq Append has recorded (0 if none).
	LastSeq(ctx context.Context) (uint64, error)
	// Range returns raw points of the given things and keys (empty keys =
	// all keys of those things) with From <= TS < To, ordered by (thing,
	// key, ts, order of appending), at most Limit of them, and the cursor of
	// the next page ("" if there is none).
	Range(ctx context.Context, q RangeQuery) (points []Point, next string, err error)
	// Latest returns the newest point of each (thing, key) of the given
	// things and keys (empty keys = all keys), ordered by (thing, key).
	// Among points with the same newest timestamp it is the last appended.
	Latest(ctx context.Context, things, keys []string) ([]Point, error)
	// Aggregate returns per (thing, key) and per bucket of Interval
	// (aligned to the Unix epoch) one of min|max|avg|sum|count|first|last
	// over the numeric values (count counts all values), ordered by
	// (thing, key, ts). Buckets with nothing to aggregate are absent.
	Aggregate(ctx context.Context, q AggQuery) ([]Bucket, error)
	// DeleteBefore removes the points with TS < t (retention) and returns
	// how many it removed. A series left without points disappears from
	// Keys.
	DeleteBefore(ctx context.Context, t int64) (int64, error)
	// Keys returns the keys the thing has points for, sorted; an empty,
	// non-nil list for a thing without any.
	Keys(ctx context.Context, thing string) ([]string, error)
	// Close releases the store. Calls after the first return the first
	// call's result.
	Close() error
}

// ValidatePoints checks points before they are stored: a valid thing name
// (core.ValidateName), a key of 1 to MaxKeyLen bytes, a timestamp between
// 0 and MaxTS, and a valid value (not the zero Value, no NaN or ±Inf, a
// string of at most MaxStringLen bytes). The error names the first bad
// point, e.g. field "points[3].key".
func ValidatePoints(points []Point) error {
	for i := range points {
		p := &points[i]
		if err := core.ValidateName("thing", p.Thing); err != nil {
			return core.Invalid(fmt.Sprintf("points[%d].thing", i), "point %d: %v", i, err)
		}
		if p.Key == "" || len(p.Key) > MaxKeyLen {
			return core.Invalid(fmt.Sprintf("points[%d].key", i), "point %d: key must be 1 to %d bytes, got %d", i, MaxKeyLen, len(p.Key))
		}
		if p.TS < 0 || p.TS > MaxTS {
			return core.Invalid(fmt.Sprintf("points[%d].ts", i), "point %d (key %q): timestamp %d is outside 0..%d", i, p.Key, p.TS, MaxTS)
		}
		if !p.Value.valid() {
			return core.Invalid(fmt.Sprintf("points[%d].value", i), "point %d (key %q): invalid value %s", i, p.Key, p.Value)
		}
		if p.Value.kind == KindString && len(p.Value.str) > MaxStringLen {
			return core.Invalid(fmt.Sprintf("points[%d].value", i), "point %d (key %q): string longer than %d bytes", i, p.Key, MaxStringLen)
		}
	}
	return nil
}

// ValidateSelection checks the things and keys of a query: 1 to
// MaxQueryThings valid thing names and at most MaxQueryKeys keys of 1 to
// MaxKeyLen bytes. Backends call it first in Latest.
func ValidateSelection(things, keys []string) error {
	if len(things) == 0 {
		return core.Invalid("things", "at least one thing is required")
	}
	if len(things) > MaxQueryThings {
		return core.Invalid("things", "at most %d things per query, got %d", MaxQueryThings, len(things))
	}
	for _, t := range things {
		if err := core.ValidateName("things", t); err != nil {
			return core.Invalid("things", "thing %q: %v", t, err)
		}
	}
	if len(keys) > MaxQueryKeys {
		return core.Invalid("keys", "at most %d keys per query, got %d", MaxQueryKeys, len(keys))
	}
	for _, k := range keys {
		if k == "" || len(k) > MaxKeyLen {
			return core.Invalid("keys", "key %q: keys must be 1 to %d bytes", k, MaxKeyLen)
		}
	}
	return nil
}

func validateTimes(from, to int64) error {
	if from >= to {
		return core.Invalid("to", "to (%d) must be after from (%d)", to, from)
	}
	return nil
}

// Validate checks q: things and keys, From < To, Limit in 1..MaxLimit and
// a well-formed cursor. Backends call it first.
func (q RangeQuery) Validate() error {
	if err := ValidateSelection(q.Things, q.Keys); err != nil {
		return err
	}
	if err := validateTimes(q.From, q.To); err != nil {
		return err
	}
	if q.Limit < 1 || q.Limit > MaxLimit {
		return core.Invalid("limit", "limit must be between 1 and %d, got %d", MaxLimit, q.Limit)
	}
	if q.Cursor != "" {
		if _, err := DecodeCursor(q.Cursor); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks q: things and keys, From < To, a known function, an
// Interval of at least MinInterval in whole milliseconds, and at most
// MaxBuckets buckets between From and To. Backends call it first.
func (q AggQuery) Validate() error {
	if err := ValidateSelection(q.Things, q.Keys); err != nil {
		return err
	}
	if err := validateTimes(q.From, q.To); err != nil {
		return err
	}
	if !q.Func.Valid() {
		return core.Invalid("func", "unknown aggregate %q (want one of min, max, avg, sum, count, first, last)", string(q.Func))
	}
	if q.Interval < MinInterval {
		return core.Invalid("interval", "interval must be at least %s, got %s", MinInterval, q.Interval)
	}
	if q.Interval%time.Millisecond != 0 {
		return core.Invalid("interval", "interval must be a whole number of milliseconds, got %s", q.Interval)
	}
	if n := BucketCount(q.From, q.To, q.Interval.Milliseconds()); n > MaxBuckets {
		return core.Invalid("interval", "%s from %d to %d makes %d buckets; at most %d are allowed (use a longer interval or a shorter range)",
			q.Interval, q.From, q.To, n, MaxBuckets)
	}
	return nil
}

// Valid reports whether f is one of AggFuncs.
func (f AggFunc) Valid() bool {
	for _, g := range AggFuncs {
		if f == g {
			return true
		}
	}
	return false
}

// floorDiv returns ⌊a/b⌋ for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// BucketStart returns the start of the bucket of width iv (ms, > 0) that
// holds ts: the largest multiple of iv not above ts. ts must be a point's
// timestamp (0..MaxTS) or near it, so that the result does not overflow.
func BucketStart(ts, iv int64) int64 { return floorDiv(ts, iv) * iv }

// BucketCount returns the number of buckets of width iv (ms, > 0) that
// [from, to) touches (0 if from >= to), for any from and to.
func BucketCount(from, to, iv int64) int64 {
	if from >= to {
		return 0
	}
	d := floorDiv(to-1, iv) - floorDiv(from, iv) // cannot overflow for iv >= 2
	if d < 0 || d == math.MaxInt64 {
		return math.MaxInt64
	}
	return d + 1
}

// Cursor is the position after the last point of a Range page: the series,
// the timestamp and a backend-specific tie breaker among points with the
// same timestamp. Backends encode it with Encode and read it back with
// DecodeCursor; to callers it is an opaque string.
type Cursor struct {
	Thing, Key string
	TS         int64
	Tie        int64
}

// cursorVersion is the first byte of an encoded cursor.
const cursorVersion = 1

// Encode returns c as an opaque URL-safe string.
func (c Cursor) Encode() string {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(c.Thing)+len(c.Key)+2*binary.MaxVarintLen64)
	b = append(b, cursorVersion)
	b = binary.AppendUvarint(b, uint64(len(c.Thing)))
	b = append(b, c.Thing...)
	b = binary.AppendUvarint(b, uint64(len(c.Key)))
	b = append(b, c.Key...)
	b = binary.AppendVarint(b, c.TS)
	b = binary.AppendVarint(b, c.Tie)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reads a cursor made by Cursor.Encode. A malformed cursor is
// a core.KindInvalid error about the field "cursor".
func DecodeCursor(s string) (Cursor, error) {
	bad := core.Invalid("cursor", "malformed cursor")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 || b[0] != cursorVersion {
		return Cursor{}, bad
	}
	b = b[1:]
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	num := func() (int64, bool) {
		v, k := binary.Varint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	var c Cursor
	var ok1, ok2, ok3, ok4 bool
	c.Thing, ok1 = str()
	if ok1 {
		c.Key, ok2 = str()
	}
	if ok2 {
		c.TS, ok3 = num()
	}
	if ok3 {
		c.Tie, ok4 = num()
	}
	if !ok4 || len(b) != 0 || c.Thing == "" || c.Key == "" {
		return Cursor{}, bad
	}
	return c, nil
}
