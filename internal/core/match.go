package core

import (
	"strings"
	"unicode/utf8"
)

// maxTopicBytes is the longest topic name or filter MQTT can carry.
const maxTopicBytes = 65535

// SharePrefix starts a shared-subscription filter: $share/{group}/{filter}.
const SharePrefix = "$share/"

// ValidTopicName reports whether t may be published to: 1 to 65535 bytes of
// valid UTF-8 without NUL and without the wildcards '+' and '#'.
func ValidTopicName(t string) bool {
	if t == "" || len(t) > maxTopicBytes {
		return false
	}
	for i := 0; i < len(t); i++ {
		switch t[i] {
		case 0, '+', '#':
			return false
		}
	}
	return utf8.ValidString(t)
}

// ValidTopicFilter reports whether f may be subscribed to: 1 to 65535 bytes
// of valid UTF-8 without NUL, where '#' appears only as the whole last level
// and '+' only as a whole level. A shared subscription
// "$share/{group}/{filter}" needs a non-empty group without '+', '#' or '/'
// and a valid filter.
func ValidTopicFilter(f string) bool { return TopicFilterProblem(f) == "" }

// TopicFilterProblem says what is wrong with the topic filter f, or returns "".
func TopicFilterProblem(f string) string {
	switch {
	case f == "":
		return "is empty"
	case len(f) > maxTopicBytes:
		return "is longer than 65535 bytes"
	case strings.IndexByte(f, 0) >= 0:
		return "contains a NUL character"
	case !utf8.ValidString(f):
		return "is not valid UTF-8"
	}
	if rest, ok := strings.CutPrefix(f, SharePrefix); ok {
		group, filter, ok := strings.Cut(rest, "/")
		switch {
		case group == "":
			return "has an empty shared-subscription group"
		case strings.ContainsAny(group, "+#"):
			return "has a shared-subscription group containing a wildcard"
		case !ok || filter == "":
			return "has no topic filter after the shared-subscription group"
		}
		f = filter
	}
	for {
		level, rest, more := strings.Cut(f, "/")
		switch {
		case level == "#" && more:
			return "has '#' before the last level"
		case level != "#" && strings.IndexByte(level, '#') >= 0:
			return "has '#' in a level with other characters"
		case level != "+" && strings.IndexByte(level, '+') >= 0:
			return "has '+' in a level with other characters"
		}
		if !more {
			return ""
		}
		f = rest
	}
}

// StripShare returns the topic filter of a shared subscription
// ("$share/g/a/b" -> "a/b") and any other filter unchanged.
func StripShare(filter string) string {
	if rest, ok := strings.CutPrefix(filter, SharePrefix); ok {
		if _, f, ok := strings.Cut(rest, "/"); ok {
			return f
		}
	}
	return filter
}

// MatchFilter reports whether topic matches filter. It is false if topic is
// not a valid topic name or filter not a valid topic filter. A filter whose
// first level is a wildcard does not match topics beginning with '$'
// (MQTT-4.7.2-1), and "a/#" matches "a". Shared-subscription filters are
// not special here: strip them with StripShare first.
func MatchFilter(filter, topic string) bool {
	return ValidTopicFilter(filter) && ValidTopicName(topic) && match(filter, topic)
}

// FilterCovers reports whether every topic that matches filter inner also
// matches filter outer: "things/#" covers "things/+/x", but "things/+/x"
// does not cover "things/#". It is false if either filter is invalid.
func FilterCovers(outer, inner string) bool {
	return ValidTopicFilter(outer) && ValidTopicFilter(inner) && covers(outer, inner)
}

// FiltersOverlap reports whether some topic matches both filters a and b.
// It is false if either filter is invalid.
func FiltersOverlap(a, b string) bool {
	return ValidTopicFilter(a) && ValidTopicFilter(b) && overlap(a, b)
}

// The functions below work on filters and topics that are assumed valid; on
// other input they return some answer, never panic and never allocate.

// match reports whether topic matches filter.
func match(filter, topic string) bool {
	if wildFirst(filter) && dollarFirst(topic) {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		t, trest, tmore := strings.Cut(topic, "/")
		switch {
		case f == "#":
			return true
		case f != "+" && f != t:
			return false
		case !tmore:
			// The topic ends here: the filter must too, or go on with
			// just "#", which also matches the parent level.
			return !fmore || frest == "#"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}

// covers reports whether every topic matching inner matches outer.
func covers(outer, inner string) bool {
	if wildFirst(outer) && dollarFirst(inner) {
		return false // inner matches $-topics, outer does not
	}
	// A '#' in inner at level k also matches the k levels before it alone,
	// unless they make the empty topic, which is not a topic name.
	innerEmptyFirst := strings.HasPrefix(inner, "/")
	for k := 0; ; k++ {
		o, orest, omore := strings.Cut(outer, "/")
		i, irest, imore := strings.Cut(inner, "/")
		switch {
		case o == "#":
			return true
		case i == "#":
			// inner matches any number of further levels, including none
			// unless the levels before make the empty topic; in that case
			// "+/#", which needs one more level, matches as much as "#".
			emptyBefore := k == 0 || k == 1 && innerEmptyFirst
			return emptyBefore && o == "+" && orest == "#"
		case o != "+" && o != i:
			return false // inner's level is "+" or another literal
		case !imore:
			return !omore || orest == "#"
		case !omore:
			return false
		}
		outer, inner = orest, irest
	}
}

// overlap reports whether some topic matches both a and b.
func overlap(a, b string) bool {
	if wildFirst(a) && dollarFirst(b) || wildFirst(b) && dollarFirst(a) {
		return false
	}
	for k := 0; ; k++ {
		x, xrest, xmore := strings.Cut(a, "/")
		y, yrest, ymore := strings.Cut(b, "/")
		switch {
		case x == "#" || y == "#":
			return true
		case x != "+" && y != "+" && x != y:
			return false
		case !xmore && !ymore:
			return true
		case !xmore || !ymore:
			// One filter ends here, so the other must end in "#", which
			// then matches this level as the last; but the topic must not
			// be empty.
			rest := xrest
			if !xmore {
				rest = yrest
			}
			return rest == "#" && (k > 0 || x != "" && y != "")
		}
		a, b = xrest, yrest
	}
}

// wildFirst reports whether the first level of filter is a wildcard.
func wildFirst(filter string) bool {
	return filter == "#" || filter == "+" || strings.HasPrefix(filter, "#/") || strings.HasPrefix(filter, "+/")
}

// dollarFirst reports whether s begins with '$': for a topic, that it is
// a system topic; for a filter, that it matches only such topics.
func dollarFirst(s string) bool { return s != "" && s[0] == '$' }

// MatchValid is MatchFilter for a filter and a topic already checked with
// ValidTopicFilter and ValidTopicName: it skips both checks, for callers
// that match one topic against many filters checked once (the bus). On
// other input it returns some answer and never panics.
func MatchValid(filter, topic string) bool { return match(filter, topic) }

// CoversValid is FilterCovers for filters already checked with
// ValidTopicFilter: it skips the checks (the policy evaluator checks its
// patterns once, when it compiles them).
func CoversValid(outer, inner string) bool { return covers(outer, inner) }
