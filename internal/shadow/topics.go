package shadow

import (
	"strings"
)

// Topic prefixes of shadow requests and responses. Both work the same
// way; responses go out under the prefix of the request, and /delta and
// /documents under both.
const (
	MotePrefix = "$mote/things/"
	AWSPrefix  = "$aws/things/"
)

// ClassicName is how the REST API (and the CLI) name the classic
// (unnamed) shadow. It is reserved: no named shadow may be called so.
const ClassicName = "classic"

// MaxNameLen bounds a named shadow's name, as in AWS.
const MaxNameLen = 64

// Filters are the bus subscriptions of the service.
var Filters = []string{MotePrefix + "+/shadow/#", AWSPrefix + "+/shadow/#"}

// op is a shadow operation.
type op uint8

const (
	opGet op = iota
	opUpdate
	opDelete
)

var opNames = [...]string{opGet: "get", opUpdate: "update", opDelete: "delete"}

func (o op) String() string { return opNames[o] }

// parseTopic splits a request topic:
//
//	{prefix}{thing}/shadow/{get|update|delete}
//	{prefix}{thing}/shadow/name/{shadow}/{get|update|delete}
//
// Anything else — the service's own response topics included — is not a
// request (ok false). The shadow name is returned unchecked.
func parseTopic(topic string) (prefix, thing, name string, o op, ok bool) {
	switch {
	case strings.HasPrefix(topic, MotePrefix):
		prefix = MotePrefix
	case strings.HasPrefix(topic, AWSPrefix):
		prefix = AWSPrefix
	default:
		return
	}
	rest := topic[len(prefix):]
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return
	}
	thing, rest = rest[:i], rest[i+1:]
	rest, found := strings.CutPrefix(rest, "shadow/")
	if !found {
		return
	}
	if n, found := strings.CutPrefix(rest, "name/"); found {
		j := strings.IndexByte(n, '/')
		if j <= 0 {
			return
		}
		name, rest = n[:j], n[j+1:]
	}
	switch rest {
	case "get":
		o = opGet
	case "update":
		o = opUpdate
	case "delete":
		o = opDelete
	default:
		return
	}
	return prefix, thing, name, o, true
}

// responseTopic returns {prefix}{thing}/shadow[/name/{name}]/{op}/{suffix}.
func responseTopic(prefix, thing, name string, o op, suffix string) string {
	var b strings.Builder
	b.Grow(len(prefix) + len(thing) + len(name) + 40)
	b.WriteString(prefix)
	b.WriteString(thing)
	b.WriteString("/shadow/")
	if name != "" {
		b.WriteString("name/")
		b.WriteString(name)
		b.WriteByte('/')
	}
	b.WriteString(o.String())
	b.WriteByte('/')
	b.WriteString(suffix)
	return b.String()
}

// ValidateName checks a named shadow's name: 1 to 64 characters from
// [A-Za-z0-9_:-], and not the reserved ClassicName. "" (the classic
// shadow) is valid.
func ValidateName(name string) *Error {
	if name == "" {
		return nil
	}
	if name == ClassicName {
		return &Error{400, "Shadow name '" + ClassicName + "' is reserved for the classic shadow"}
	}
	if len(name) > MaxNameLen {
		return &Error{400, "Shadow name is longer than 64 characters"}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == ':' || c == '-') {
			return &Error{400, "Shadow name may contain only letters, digits and _ : -"}
		}
	}
	return nil
}
