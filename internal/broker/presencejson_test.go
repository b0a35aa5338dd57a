package broker

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

var jsonStrings = []string{
	"", "dev-1", `a"b\c`, "<script>&amp;</script>", "tab\tnl\ncr\rbs\bff\f", "\x00\x01\x1f\x7f",
	"é日本\U0001F600", "bad\xffutf8\xc3", "line\u2028para\u2029", "[::1]:1883", "client_disconnect_with_will",
}

// marshal is encoding/json without HTML escaping (core.AppendJSONString,
// shared with the rules engine and shadows, does not escape <, > and &).
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), err
}

// TestEventJSON: the presence event is written by hand with the same
// bytes encoding/json produces, without allocating beyond the buffer.
func TestEventJSON(t *testing.T) {
	at := time.Date(2026, 12, 5, 15, 4, 5, 123456789, time.UTC)
	for _, s := range jsonStrings {
		for _, e := range []Event{
			{Event: "connected", ClientID: s, Thing: "t", Time: at, RemoteAddr: "127.0.0.1:5", Listener: "tcp", ProtocolVersion: 4, CleanSession: true},
			{Event: "disconnected", ClientID: "c", Thing: s, Time: at.Truncate(time.Second), RemoteAddr: s, Listener: s, ProtocolVersion: 5, Reason: s, WillSent: true},
		} {
			want, err := marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.appendJSON(nil); !bytes.Equal(got, want) {
				t.Errorf("appendJSON(%q) =\n%s\nwant (encoding/json)\n%s", s, got, want)
			}
		}
	}
	e := Event{Event: "connected", ClientID: "bench-1", Thing: "bench", Time: at, RemoteAddr: "127.0.0.1:40000", Listener: "tcp", ProtocolVersion: 4}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { e.appendJSON(buf[:0]) }); n != 0 {
		t.Errorf("appendJSON allocates %v times into a large enough buffer; want 0", n)
	}
}

func FuzzEventJSON(f *testing.F) {
	for _, s := range jsonStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Event{Event: "disconnected", ClientID: s, Thing: s, Time: time.Unix(0, 0).UTC(), RemoteAddr: s, Listener: s, Reason: s}
		want, _ := marshal(e)
		if got := e.appendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("appendJSON(%q) = %s; want %s", s, got, want)
		}
	})
}
