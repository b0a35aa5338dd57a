package natsbus

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
)

func sameMessage(a, b core.Message) bool {
	return a.Topic == b.Topic && bytes.Equal(a.Payload, b.Payload) && a.QoS == b.QoS && a.Retain == b.Retain &&
		a.ClientID == b.ClientID && a.Thing == b.Thing && a.Received.Equal(b.Received) && a.Protocol == b.Protocol &&
		a.Seq == b.Seq && a.Node == b.Node && reflect.DeepEqual(a.Properties, b.Properties)
}

func TestCodec(t *testing.T) {
	m := core.Message{Topic: "things/a/telemetry", Payload: []byte(`{"t":1}`), QoS: 1, Retain: true, ClientID: "c",
		Thing: "a", Received: time.Unix(1700000000, 42).UTC(), Protocol: "mqtt", Seq: 9}
	data := AppendMessage(nil, "node-1", m)
	got, err := DecodeMessage(data)
	m.Node = "node-1"
	if err != nil || !sameMessage(got, m) {
		t.Fatalf("DecodeMessage(AppendMessage(%+v)) = %+v, %v", m, got, err)
	}
	// Overhead beyond the strings and the payload: 2 header bytes, one
	// length byte per short string, 9 bytes of time, 1 of seq.
	strs := len("node-1") + len(m.Topic) + len(m.ClientID) + len(m.Thing) + len(m.Protocol)
	if n, want := len(data), 2+5+strs+9+1+len(m.Payload); n != want {
		t.Errorf("encoded size %d; want %d", n, want)
	}
	// With user properties: version 2.
	m.Properties = []core.Property{{Key: "$.ct", Value: "application/json"}, {Key: "k", Value: ""}, {Key: "k", Value: "é"}}
	withProps := AppendMessage(nil, "node-1", m)
	if got, err := DecodeMessage(withProps); err != nil || !sameMessage(got, m) || withProps[0] != codecVersionProps {
		t.Fatalf("with properties: DecodeMessage(AppendMessage(%+v)) = %+v, %v", m, got, err)
	}
	noPayload := len(withProps) - len(m.Payload)
	for _, bad := range [][]byte{nil, {1}, {2, 0}, {3, 0}, {1, 0x10}, {1, 3}, data[:len(data)-len(m.Payload)-1], {1, 0, 5, 'a'},
		{2, 0, 0, 0, 0, 0, 0, 0, 0},                                  // zero properties
		{2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0}, // a count larger than the message
		withProps[:noPayload-1]} {
		if _, err := DecodeMessage(bad); err == nil {
			t.Errorf("DecodeMessage(%q) succeeded; want an error", bad)
		}
	}
}

func FuzzCodecRoundTrip(f *testing.F) {
	f.Add("n", "things/a/t", []byte("x"), byte(1), true, "c", "a", int64(1700000000000000000), "mqtt", uint64(3))
	f.Add("", "", []byte(nil), byte(0), false, "", "", int64(0), "", uint64(0))
	f.Fuzz(func(t *testing.T, node, topic string, payload []byte, qos byte, retain bool, client, thing string, ns int64, proto string, seq uint64) {
		m := core.Message{Topic: topic, Payload: payload, QoS: qos % 3, Retain: retain, ClientID: client, Thing: thing, Protocol: proto, Seq: seq, Node: node}
		if ns != 0 {
			m.Received = time.Unix(0, ns)
		}
		got, err := DecodeMessage(AppendMessage(nil, node, m))
		if err != nil || !sameMessage(got, m) {
			t.Fatalf("round trip of %+v = %+v, %v", m, got, err)
		}
	})
}

func FuzzDecode(f *testing.F) {
	f.Add(AppendMessage(nil, "n", core.Message{Topic: "a", Payload: []byte("p"), Received: time.Unix(1, 2)}))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 8, 0, 0, 0, 0, 0, 0xff})
	f.Add(AppendMessage(nil, "n", core.Message{Topic: "a", Properties: []core.Property{{Key: "k", Value: "v"}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeMessage(data)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		again, err := DecodeMessage(AppendMessage(nil, m.Node, m))
		if err != nil || !sameMessage(again, m) {
			t.Fatalf("DecodeMessage(%q) = %+v; its re-encoding decodes to %+v, %v", data, m, again, err)
		}
	})
}
