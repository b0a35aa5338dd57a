// Package rules is the SQL dialect of Mote's rules engine: a hand-written
// lexer and recursive-descent parser, a compiler to closures, and a
// purpose-built JSON decoder for payloads. The dialect is documented for
// users in docs/rules.md.
//
// A rule is
//
//	SELECT <projection> FROM '<topic filter>' [WHERE <condition>]
//
// Parse compiles it into a Statement (immutable, safe for concurrent use).
// For each message on a topic the statement Matches, EvalMessage returns
// the output Object, or ok == false when the WHERE condition is not true,
// or an *EvalError when a CAST fails:
//
//	s, err := rules.Parse("SELECT temp, topic(2) AS device FROM 'things/+/telemetry' WHERE temp > 50")
//	...
//	m := rules.NewMessage(rules.InputOf(msg)) // one per message, shared by all rules
//	for _, s := range statements {
//		if !s.Matches(msg.Topic) {
//			continue
//		}
//		out, ok, err := s.EvalMessage(m)
//		...
//		body := out.AppendJSON(buf[:0]) // {"temp":55.5,"device":"sensor-1"}
//	}
//
// A Message decodes its payload once, on first use, however many
// statements read it; it is not safe for concurrent use, but the Objects
// evaluated from it are immutable and may be handed to other goroutines.
//
// Values are JSON values plus "undefined" (a missing field): Kind tells
// which; numbers are int64 (KindInt) when written without fraction or
// exponent and in range, float64 (KindFloat) otherwise. An Object keeps
// its members in projection order and encodes itself as JSON without
// reflection (AppendJSON, MarshalJSON); Map and Value.Any convert to the
// types encoding/json would produce (with int64 for ints).
//
// Errors: Parse returns a *ParseError with the 1-based line and column
// (in characters) and what was expected. Statements are limited to
// MaxSQLBytes and MaxDepth levels of nesting; strings built by functions
// to MaxStringBytes; payloads to encoding/json's nesting limit.
package rules
