package natsbus

import (
	"errors"
	"fmt"
	"strings"
)

// The topic ↔ subject mapping.
//
// It is the mapping nats-server's MQTT gateway uses — each MQTT level is a
// NATS token, '/' becomes '.', the filter wildcards '+' and '#' become '*'
// and '>' — with a reversible escape for what a NATS token cannot hold:
//
//	'%'                        → "%25" (the escape character itself)
//	'.'                        → "%2E"
//	'*', '>'                   → "%2A", "%3E" (literal characters, not wildcards)
//	bytes 0x00–0x20 and 0x7F   → "%XX" (spaces and control characters)
//	an empty level             → "%"   (a lone '%', which no escape produces)
//
// Every subject is put under a prefix ("mote" by default), so that a
// subscription to "#" is "mote.>" and never sees $SYS, $JS or inboxes.
// The mapping is one to one: Topic(Subject(t)) == t for every topic t, which
// FuzzSubjectRoundTrip checks.

// escapeByte reports whether c is written as %XX inside a token.
func escapeByte(c byte) bool {
	return c <= 0x20 || c == 0x7f || c == '%' || c == '.' || c == '*' || c == '>'
}

const hexDigits = "0123456789ABCDEF"

func appendLevel(dst []byte, level string) []byte {
	if level == "" {
		return append(dst, '%')
	}
	for i := 0; i < len(level); i++ {
		c := level[i]
		if escapeByte(c) {
			dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&0xf])
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// Subject maps an MQTT topic name (no wildcards) to the NATS subject it is
// published on, under prefix.
func Subject(prefix, topic string) (string, error) {
	if topic == "" {
		return "", errors.New("natsbus: empty topic")
	}
	if strings.ContainsAny(topic, "+#") {
		return "", fmt.Errorf("natsbus: topic %q has a wildcard", topic)
	}
	b := make([]byte, 0, len(prefix)+1+len(topic)+8)
	b = append(b, prefix...)
	for level := range strings.SplitSeq(topic, "/") {
		b = append(b, '.')
		b = appendLevel(b, level)
	}
	return string(b), nil
}

// FilterSubjects maps an MQTT topic filter to the NATS subjects to
// subscribe to. A filter ending in "/#" also matches its parent level in
// MQTT ("a/#" matches "a"), which NATS's '>' does not, so it needs two
// subjects: "a" and "a.>".
func FilterSubjects(prefix, filter string) ([]string, error) {
	if filter == "" {
		return nil, errors.New("natsbus: empty topic filter")
	}
	levels := strings.Split(filter, "/")
	b := make([]byte, 0, len(prefix)+1+len(filter)+8)
	b = append(b, prefix...)
	for i, level := range levels {
		switch {
		case level == "#":
			if i != len(levels)-1 {
				return nil, fmt.Errorf("natsbus: topic filter %q: '#' is not the last level", filter)
			}
			if i == 0 {
				return []string{string(b) + ".>"}, nil
			}
			parent := string(b)
			return []string{parent, parent + ".>"}, nil
		case level == "+":
			b = append(b, '.', '*')
		case strings.ContainsAny(level, "+#"):
			return nil, fmt.Errorf("natsbus: topic filter %q: a wildcard must be a whole level", filter)
		default:
			b = append(b, '.')
			b = appendLevel(b, level)
		}
	}
	return []string{string(b)}, nil
}

// Topic maps a NATS subject published by Subject back to its MQTT topic.
func Topic(prefix, subject string) (string, error) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok || !strings.HasPrefix(rest, ".") {
		return "", fmt.Errorf("natsbus: subject %q is not under %q", subject, prefix)
	}
	rest = rest[1:]
	var b strings.Builder
	b.Grow(len(rest))
	first := true
	for tok := range strings.SplitSeq(rest, ".") {
		if !first {
			b.WriteByte('/')
		}
		first = false
		if tok == "%" {
			continue // an empty level
		}
		if tok == "" || tok == "*" || tok == ">" {
			return "", fmt.Errorf("natsbus: subject %q: token %q is not a topic level", subject, tok)
		}
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			if c != '%' {
				if escapeByte(c) || c == '+' || c == '#' || c == '/' {
					return "", fmt.Errorf("natsbus: subject %q: unescaped %q", subject, c)
				}
				b.WriteByte(c)
				continue
			}
			if i+2 >= len(tok) {
				return "", fmt.Errorf("natsbus: subject %q: short escape", subject)
			}
			hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
			if hi < 0 || lo < 0 {
				return "", fmt.Errorf("natsbus: subject %q: bad escape", subject)
			}
			c = byte(hi<<4 | lo)
			if !escapeByte(c) {
				return "", fmt.Errorf("natsbus: subject %q: needless escape %%%02X", subject, c)
			}
			b.WriteByte(c)
			i += 2
		}
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("natsbus: subject %q: empty topic", subject)
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
