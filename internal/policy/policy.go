// Package policy authorizes Mote devices on MQTT topics.
//
// A policy is a Document of statements. Each statement allows or denies
// some actions on some topic patterns:
//
//	{"statements": [
//	  {"effect": "allow", "actions": ["publish", "subscribe", "receive"],
//	   "topics": ["things/${thing}/#"]},
//	  {"effect": "deny", "actions": ["subscribe", "receive"], "topics": ["things/${thing}/secret/#"]}
//	]}
//
// A client is governed by the documents attached to it, compiled into an
// Evaluator with the client's variables. The rules are:
//
//   - Deny overrides allow; nothing is allowed unless some allow statement
//     grants it.
//   - publish: the topic must match an allow-publish pattern and no
//     deny-publish pattern.
//   - subscribe (a SUBSCRIBE request for a filter; a shared-subscription
//     prefix "$share/{group}/" is stripped first): some allow-subscribe
//     pattern must cover the filter, that is, match every topic the filter
//     matches, and no deny-subscribe pattern may match the filter as
//     written, its '+' and '#' read as plain level names (as AWS IoT
//     matches iot:Subscribe on topicfilter/...). So a deny on
//     "test/nosubscribe" refuses that subscription but not "#" or "test/+",
//     a deny on "things/secret/#" refuses "things/secret/#",
//     "things/secret/+" and "things/secret/a" but not "things/#", and an
//     allow on "things/+/data" does not grant a subscription to "things/#".
//   - receive (delivery of a message on a topic to a subscriber, whatever
//     filter it subscribed with): the topic must match an allow pattern
//     whose actions include receive or subscribe (an allow on subscribe
//     implies receive) and no deny-receive pattern, and some allow-subscribe
//     pattern must still match it. A deny on subscribe does not hide
//     messages from a wildcard subscriber: a deny on receive does. So
//     "everything except X" is: allow subscribe and receive "#", deny
//     subscribe and receive "X".
//   - Variables: ${thing} and ${clientid} in a pattern are replaced by the
//     client's thing name and MQTT client id. If a value is empty or contains
//     '+', '#', '/' or NUL (a client id can contain anything), an allow
//     pattern using it is dropped, so that it cannot widen access. A deny
//     pattern keeps the value as it is, and a level left containing '+' or
//     '#' becomes that wildcard ('#' then ends the pattern): a wider deny is
//     safe.
//   - A document that fails Validate is never compiled: the client is then
//     allowed nothing.
//   - Patterns and topics are compared level by level with the MQTT rules
//     for wildcards: '+' matches one level, '#' (last) any number of levels
//     including none, and a pattern whose first level is a wildcard does not
//     match topics that begin with '$'. There are no regular expressions.
package policy

import (
	"fmt"
	"strings"

	"github.com/moteiot/mote/internal/core"
)

// Effect says whether a statement allows or denies.
type Effect string

// The effects.
const (
	Allow Effect = "allow"
	Deny  Effect = "deny"
)

// Action is something a client does on a topic.
type Action string

// The actions.
const (
	// Publish is sending a message to a topic.
	Publish Action = "publish"
	// Subscribe is asking for messages on a topic filter. An allow on it
	// implies Receive on the same topics; a deny on it refuses SUBSCRIBE
	// requests only.
	Subscribe Action = "subscribe"
	// Receive is being delivered a message published on a topic.
	Receive Action = "receive"
)

// Limits on a Document.
const (
	MaxStatements = 100  // statements per document
	MaxTopics     = 100  // topics per statement
	MaxTopicLen   = 1024 // bytes per topic pattern
)

// Statement allows or denies Actions on Topics.
type Statement struct {
	Effect  Effect   `json:"effect"`
	Actions []Action `json:"actions"`
	// Topics are MQTT topic filters that may contain the variables ${thing}
	// and ${clientid}.
	Topics []string `json:"topics"`
}

// Document is a policy: a list of statements.
type Document struct {
	Statements []Statement `json:"statements"`
}

// DefaultDocument returns what every thing may do: publish, subscribe and
// receive on its own topics "things/${thing}/#", "$mote/things/${thing}/#"
// and "$aws/things/${thing}/#".
func DefaultDocument() Document {
	return Document{Statements: []Statement{{
		Effect:  Allow,
		Actions: []Action{Publish, Subscribe, Receive},
		Topics: []string{
			core.ThingsPrefix + "${thing}/#",
			core.PlatformPrefix + "things/${thing}/#",
			core.AWSPrefix + "${thing}/#",
		},
	}}}
}

// Validate checks the document: at most 100 statements, each with the effect
// "allow" or "deny", at least one known action and 1 to 100 topics. Each
// topic must be at most 1024 bytes and a valid MQTT topic filter (not a
// shared subscription) once its variables are replaced; the only variables
// are ${thing} and ${clientid}. The error is a core.KindInvalid error whose
// field names the culprit, e.g. "statements[1].topics[0]".
func (d Document) Validate() error {
	if len(d.Statements) > MaxStatements {
		return core.Invalid("statements", "a policy may have at most %d statements, not %d", MaxStatements, len(d.Statements))
	}
	for i, s := range d.Statements {
		if err := s.validate(fmt.Sprintf("statements[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}

func (s Statement) validate(field string) error {
	switch s.Effect {
	case Allow, Deny:
	case "":
		return core.Invalid(field+".effect", "effect is required: \"allow\" or \"deny\"")
	default:
		return core.Invalid(field+".effect", "effect must be \"allow\" or \"deny\", not %q", s.Effect)
	}
	if len(s.Actions) == 0 {
		return core.Invalid(field+".actions", "at least one action is required: \"publish\", \"subscribe\" or \"receive\"")
	}
	for i, a := range s.Actions {
		switch a {
		case Publish, Subscribe, Receive:
		default:
			return core.Invalid(fmt.Sprintf("%s.actions[%d]", field, i), "unknown action %q: want \"publish\", \"subscribe\" or \"receive\"", a)
		}
	}
	if len(s.Topics) == 0 {
		return core.Invalid(field+".topics", "at least one topic is required")
	}
	if len(s.Topics) > MaxTopics {
		return core.Invalid(field+".topics", "a statement may have at most %d topics, not %d", MaxTopics, len(s.Topics))
	}
	for i, t := range s.Topics {
		if msg := patternProblem(t); msg != "" {
			return core.Invalid(fmt.Sprintf("%s.topics[%d]", field, i), "topic %q %s", truncate(t), msg)
		}
	}
	return nil
}

// patternProblem says what is wrong with a topic pattern, or returns "".
func patternProblem(p string) string {
	if len(p) > MaxTopicLen {
		return fmt.Sprintf("is longer than %d bytes", MaxTopicLen)
	}
	filter, _, problem := substitute(p, Vars{Thing: "x", ClientID: "x"})
	if problem != "" {
		return problem
	}
	if strings.HasPrefix(filter, core.SharePrefix) {
		return "is a shared subscription ($share/...): policies name the plain filter, the prefix is stripped before checking"
	}
	if problem := core.TopicFilterProblem(filter); problem != "" {
		return "is not a valid MQTT topic filter: it " + problem
	}
	return ""
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// Vars are the values of a client's policy variables.
type Vars struct {
	Thing    string // ${thing}: the name of the thing the client authenticated as
	ClientID string // ${clientid}: the MQTT client id
}

// substitute replaces the variables in pattern with their values in v.
// unsafe reports that a value used is empty or contains '+', '#', '/' or
// NUL. problem describes an unknown or unterminated variable.
func substitute(pattern string, v Vars) (out string, unsafe bool, problem string) {
	if !strings.Contains(pattern, "${") {
		return pattern, false, ""
	}
	var b strings.Builder
	for {
		before, after, found := strings.Cut(pattern, "${")
		b.WriteString(before)
		if !found {
			return b.String(), unsafe, ""
		}
		name, rest, ok := strings.Cut(after, "}")
		if !ok {
			return "", false, `has "${" without a closing "}"`
		}
		var value string
		switch name {
		case "thing":
			value = v.Thing
		case "clientid":
			value = v.ClientID
		default:
			return "", false, fmt.Sprintf("uses the unknown variable %q: only ${thing} and ${clientid} are allowed", truncate("${"+name+"}"))
		}
		if value == "" || strings.ContainsAny(value, "+#/\x00") {
			unsafe = true
		}
		b.WriteString(value)
		pattern = rest
	}
}
