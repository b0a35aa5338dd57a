package coap

import "testing"

type countPub struct{ n int }

func (p *countPub) Publish(string, []byte, bool, byte) error { p.n++; return nil }

func TestShadowFeed(t *testing.T) {
	for topic, want := range map[string]shadowRef{
		"$mote/things/t1/shadow/update/documents":          {thing: "t1"},
		"$mote/things/t1/shadow/name/cfg/update/documents": {thing: "t1", name: "cfg"},
		"$aws/things/t1/shadow/delete/accepted":            {thing: "t1"},
	} {
		if got, ok := changedShadow(topic); !ok || got != want {
			t.Errorf("changedShadow(%q) = %+v, %v; want %+v", topic, got, ok, want)
		}
	}
	// $aws/.../update/documents is the twin of the $mote one: one change,
	// one notification.
	for _, topic := range []string{"$aws/things/t1/shadow/update/documents", "$aws/things/t1/shadow/name/cfg/update/documents", "$aws/things/t1/shadow/update/accepted", "$aws/things/t1/shadow/get/accepted", "things/t1/shadow/update/documents", "$mote/things/t1/shadow/name/update/documents", "$aws/things/t1/shadow"} {
		if got, ok := changedShadow(topic); ok {
			t.Errorf("changedShadow(%q) = %+v; want no change", topic, got)
		}
	}
	// A full queue drops (and counts) changes, never blocks, and every
	// response still reaches the broker.
	next := &countPub{}
	f := NewShadowFeed(next, 2)
	for range 5 {
		_ = f.Publish("$mote/things/t1/shadow/update/documents", nil, false, 1)
	}
	if next.n != 5 || f.Dropped() != 3 || len(f.ch) != 2 {
		t.Errorf("published %d, dropped %d, queued %d; want 5, 3, 2", next.n, f.Dropped(), len(f.ch))
	}
}
