package broker

import "testing"

// The quota charges a change only what it adds, and follows a topic from
// one owner to another.
func TestRetainedQuotaAccounting(t *testing.T) {
	q := newRetainedQuota(2, 100, 150)
	steps := []struct {
		op           string // "check", "set" or "remove"
		thing, topic string
		size         int64
		want         string // check: the refusal reason, "" to pass
	}{
		{"check", "a", "t/1", 60, ""},
		{"set", "a", "t/1", 60, ""},
		{"check", "a", "t/1", 100, ""},            // replacing: 100 in all
		{"check", "a", "t/1", 101, "thing_bytes"}, // 101 in all
		{"check", "a", "t/2", 40, ""},
		{"set", "a", "t/2", 40, ""},
		{"check", "a", "t/3", 1, "thing_count"},
		{"check", "a", "t/2", 10, ""}, // smaller: passes
		{"check", "b", "t/3", 60, "server_bytes"},
		{"check", "b", "t/3", 50, ""},
		{"check", "b", "t/1", 60, ""}, // b takes over a's topic: the server total does not grow
		{"set", "b", "t/1", 60, ""},
		{"check", "a", "t/3", 10, ""}, // a holds one message (40 bytes) now
		{"remove", "", "t/2", 0, ""},
		{"remove", "", "t/9", 0, ""}, // unknown: nothing happens
	}
	for i, st := range steps {
		switch st.op {
		case "check":
			if got := q.check(st.thing, st.topic, st.size); got != st.want {
				t.Fatalf("step %d: check(%s, %s, %d) = %q; want %q", i, st.thing, st.topic, st.size, got, st.want)
			}
		case "set":
			q.set(st.thing, st.topic, st.size)
		case "remove":
			q.remove(st.topic)
		}
	}
	if n, b := q.usage("a"); n != 0 || b != 0 {
		t.Errorf("usage(a) = %d, %d; want 0, 0", n, b)
	}
	if n, b := q.usage("b"); n != 1 || b != 60 {
		t.Errorf("usage(b) = %d, %d; want 1, 60", n, b)
	}
	if got := q.bytes.Load(); got != 60 {
		t.Errorf("bytes = %d; want 60", got)
	}
}
