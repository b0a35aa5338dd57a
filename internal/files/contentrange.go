package files

import (
	"strconv"
	"strings"

	"github.com/moteiot/mote/internal/core"
)

// ContentRange is the Content-Range of one piece of an upload:
// "bytes START-END/TOTAL" or "bytes START-END/*" (total not known yet).
type ContentRange struct {
	Start, End int64 // inclusive
	Total      int64 // -1: "*"
}

// Len is the number of bytes the piece carries.
func (c ContentRange) Len() int64 { return c.End - c.Start + 1 }

// maxRangeValue bounds the numbers of a Content-Range (1 EiB): far above
// any quota, far below overflow.
const maxRangeValue = 1 << 60

// ParseContentRange parses a Content-Range request header (RFC 9110
// 14.4). Errors are core.KindInvalid naming the header.
func ParseContentRange(h string) (ContentRange, error) {
	bad := func(why string) (ContentRange, error) {
		return ContentRange{}, core.Invalid("Content-Range", "Content-Range %q: %s (want bytes START-END/TOTAL or bytes START-END/*)", trunc(h), why)
	}
	unit, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return bad("unit must be bytes")
	}
	rng, total, ok := strings.Cut(strings.TrimSpace(rest), "/")
	if !ok {
		return bad("missing /TOTAL")
	}
	s, e, ok := strings.Cut(rng, "-")
	if !ok {
		return bad("missing START-END")
	}
	var c ContentRange
	var err error
	if c.Start, err = num(s); err != nil {
		return bad("bad START")
	}
	if c.End, err = num(e); err != nil {
		return bad("bad END")
	}
	if c.End < c.Start {
		return bad("END before START")
	}
	if total == "*" {
		c.Total = -1
	} else {
		if c.Total, err = num(total); err != nil {
			return bad("bad TOTAL")
		}
		if c.End >= c.Total {
			return bad("END at or past TOTAL")
		}
	}
	return c, nil
}

// num parses a non-negative decimal of at most 19 digits, no sign.
func num(s string) (int64, error) {
	if s == "" || len(s) > 19 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, strconv.ErrSyntax
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxRangeValue {
		return 0, strconv.ErrRange
	}
	return n, nil
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
