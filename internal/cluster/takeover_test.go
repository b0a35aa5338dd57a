package cluster

import (
	"bytes"
	"testing"
)

func TestTakeoverRoundTrip(t *testing.T) {
	for _, tc := range []struct{ node, client string }{{"n1", "dev-1"}, {"node_2", "a/b c"}, {"x", "ü"}} {
		node, client, err := parseTakeover(appendTakeover(nil, tc.node, tc.client))
		if err != nil || node != tc.node || client != tc.client {
			t.Errorf("parseTakeover(appendTakeover(%q, %q)) = %q, %q, %v", tc.node, tc.client, node, client, err)
		}
	}
	for _, bad := range []string{"", "1", "2n\x00c", "1n", "1\x00c", "1n\x00", "1n\x00c\x00d"} {
		if _, _, err := parseTakeover([]byte(bad)); err == nil {
			t.Errorf("parseTakeover(%q) = nil error; want one", bad)
		}
	}
}

// FuzzTakeover: any input is parsed or refused without panicking, and
// what parses is written back the same.
func FuzzTakeover(f *testing.F) {
	f.Add([]byte("1node-1\x00client"))
	f.Add([]byte("1\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		node, client, err := parseTakeover(data)
		if err != nil {
			return
		}
		if got := appendTakeover(nil, node, client); !bytes.Equal(got, data) {
			t.Fatalf("round trip of %q = %q", data, got)
		}
	})
}
