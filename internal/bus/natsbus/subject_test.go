package natsbus

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSubject(t *testing.T) {
	for _, tc := range []struct{ topic, want string }{
		{"things/t1/telemetry", "mote.things.t1.telemetry"},
		{"$aws/things/t1/shadow/update", "mote.$aws.things.t1.shadow.update"},
		{"a.b/c", "mote.a%2Eb.c"},
		{"sp ace/tab\t", "mote.sp%20ace.tab%09"},
		{"/a//b/", "mote.%.a.%.b.%"},
		{"st*r/>", "mote.st%2Ar.%3E"},
		{"100%", "mote.100%25"},
		{"ü/€", "mote.ü.€"},
	} {
		got, err := Subject("mote", tc.topic)
		if err != nil || got != tc.want {
			t.Errorf("Subject(%q) = %q, %v; want %q", tc.topic, got, err, tc.want)
		}
		back, err := Topic("mote", got)
		if err != nil || back != tc.topic {
			t.Errorf("Topic(%q) = %q, %v; want %q", got, back, err, tc.topic)
		}
	}
	for _, bad := range []string{"", "a/+", "a/#", "a+b"} {
		if s, err := Subject("mote", bad); err == nil {
			t.Errorf("Subject(%q) = %q; want an error", bad, s)
		}
	}
}

func TestFilterSubjects(t *testing.T) {
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"#", []string{"mote.>"}},
		{"+", []string{"mote.*"}},
		{"a/#", []string{"mote.a", "mote.a.>"}},
		{"a/+/c", []string{"mote.a.*.c"}},
		{"+/+/#", []string{"mote.*.*", "mote.*.*.>"}},
		{"/#", []string{"mote.%", "mote.%.>"}},
		{"a.b/ /+", []string{"mote.a%2Eb.%20.*"}},
	} {
		got, err := FilterSubjects("mote", tc.filter)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("FilterSubjects(%q) = %q, %v; want %q", tc.filter, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "a/#/b", "a+/b", "a/b#"} {
		if s, err := FilterSubjects("mote", bad); err == nil {
			t.Errorf("FilterSubjects(%q) = %q; want an error", bad, s)
		}
	}
}

// validSubject reports whether s is a literal NATS subject: non-empty
// tokens, no white space or control characters, no wildcard tokens.
func validSubject(s string) bool {
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c <= 0x20 || c == 0x7f || c == '*' || c == '>' {
				return false
			}
		}
	}
	return true
}

func FuzzSubjectRoundTrip(f *testing.F) {
	for _, s := range []string{"a", "a/b", "/", "//", "a.b", "%", "%2E", "$SYS/x", " ", "a\x00b", "*/>", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		subj, err := Subject("mote", topic)
		if err != nil {
			if topic != "" && !strings.ContainsAny(topic, "+#") {
				t.Fatalf("Subject(%q): %v", topic, err)
			}
			return
		}
		if !validSubject(subj) {
			t.Fatalf("Subject(%q) = %q: not a literal NATS subject", topic, subj)
		}
		back, err := Topic("mote", subj)
		if err != nil || back != topic {
			t.Fatalf("Topic(Subject(%q)) = %q, %v", topic, back, err)
		}
		// A filter equal to the topic subscribes to exactly its subject.
		subs, err := FilterSubjects("mote", topic)
		if err != nil || len(subs) != 1 || subs[0] != subj {
			t.Fatalf("FilterSubjects(%q) = %q, %v; want [%q]", topic, subs, err, subj)
		}
		if utf8.ValidString(topic) != utf8.ValidString(subj) {
			t.Fatalf("Subject(%q) = %q changed UTF-8 validity", topic, subj)
		}
	})
}

func FuzzTopic(f *testing.F) {
	for _, s := range []string{"mote.a", "mote.%", "mote.%2E", "mote.%2", "mote.%41", "mote.*", "mote..a", "other.a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, subj string) {
		topic, err := Topic("mote", subj)
		if err != nil {
			return
		}
		// Whatever Topic accepts is exactly what Subject produces.
		again, err := Subject("mote", topic)
		if err != nil || again != subj {
			t.Fatalf("Topic(%q) = %q, but Subject of that = %q, %v", subj, topic, again, err)
		}
	})
}
