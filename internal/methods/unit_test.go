package methods_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/methods"
)

type publisherFunc func(topic string, payload []byte)

func (f publisherFunc) Publish(topic string, payload []byte, _ bool, _ byte) error {
	f(topic, payload)
	return nil
}

type always struct{}

func (always) Connected(string) bool { return true }

func msg(topic, thing string) core.Message {
	return core.Message{Topic: topic, Thing: thing, Payload: []byte(`{"ok":true}`)}
}

// TestWrongThingCannotAnswer: an answer with the right request id but from
// (or on the topic of) another thing is ignored.
func TestWrongThingCannotAnswer(t *testing.T) {
	reqs := make(chan string, 1)
	var svc *methods.Service
	svc = methods.New(methods.Options{Publisher: publisherFunc(func(topic string, _ []byte) { reqs <- topic }), Presence: always{}})
	type result struct {
		r   methods.Response
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := svc.Invoke(context.Background(), "a", "m", nil, 5*time.Second)
		done <- result{r, err}
	}()
	topic := <-reqs
	id := topic[strings.LastIndex(topic, "/")+1:]
	svc.HandleMessage(msg("$mote/things/b/methods/res/200/"+id, "b")) // b's own topic
	svc.HandleMessage(msg("$mote/things/a/methods/res/200/"+id, "b")) // a's topic, published by b
	svc.HandleMessage(msg("$mote/things/a/methods/res/201/"+id, "a")) // the real answer
	res := <-done
	if res.err != nil || res.r.Status != 201 {
		t.Fatalf("Invoke = %+v, %v; want status 201 from a", res.r, res.err)
	}
}

func TestParseResponseTopic(t *testing.T) {
	for _, tc := range []struct {
		topic  string
		thing  string
		status int
		id     string
		ok     bool
	}{
		{"$mote/things/t1/methods/res/200/abc", "t1", 200, "abc", true},
		{"$mote/things/t1/methods/res/-1/abc", "t1", -1, "abc", true},
		{"$mote/things/t1/methods/res/2147483648/abc", "", 0, "", false},
		{"$mote/things/t1/methods/res/ok/abc", "", 0, "", false},
		{"$mote/things/t1/methods/res/200/", "", 0, "", false},
		{"$mote/things/t1/methods/res/200/a/b", "", 0, "", false},
		{"$mote/things//methods/res/200/a", "", 0, "", false},
		{"$mote/things/t1/methods/reboot/abc", "", 0, "", false},
		{"things/t1/methods/res/200/abc", "", 0, "", false},
	} {
		thing, status, id, ok := methods.ParseResponseTopic(tc.topic)
		if thing != tc.thing || status != tc.status || id != tc.id || ok != tc.ok {
			t.Errorf("ParseResponseTopic(%q) = %q, %d, %q, %v; want %q, %d, %q, %v",
				tc.topic, thing, status, id, ok, tc.thing, tc.status, tc.id, tc.ok)
		}
	}
}

// FuzzParseResponseTopic: never panics, and what it accepts round-trips
// through ResponseTopic.
func FuzzParseResponseTopic(f *testing.F) {
	for _, s := range []string{
		"$mote/things/t1/methods/res/200/abc",
		"$mote/things/t1/methods/res/-7/x",
		"$mote/things/t/methods/res//",
		"$mote/things/t/methods/res/+0200/abc",
		"$mote/things/a/b/methods/res/1/2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		thing, status, id, ok := methods.ParseResponseTopic(topic)
		if !ok {
			return
		}
		if thing == "" || id == "" || strings.Contains(thing, "/") || strings.Contains(id, "/") {
			t.Fatalf("ParseResponseTopic(%q) accepted %q %q", topic, thing, id)
		}
		again, s2, id2, ok2 := methods.ParseResponseTopic(methods.ResponseTopic(thing, status, id))
		if !ok2 || again != thing || s2 != status || id2 != id {
			t.Fatalf("round trip of %q: %q %d %q %v", topic, again, s2, id2, ok2)
		}
	})
}
