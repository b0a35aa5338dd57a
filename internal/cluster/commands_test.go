package cluster

import (
	"bytes"
	"sync"
	"testing"
)

// TestCommandQueued: a command queued on node A is heard by B and C (not
// by A itself), over core NATS; garbage on the subject is counted and
// handed to nobody.
func TestCommandQueued(t *testing.T) {
	s := startNATS(t)
	var (
		mu    sync.Mutex
		heard = map[string][]string{}
	)
	nodes := map[string]*Node{}
	for _, id := range []string{"a", "b", "c"} {
		n := join(t, s, id, &fakeBroker{}, 0)
		if err := n.OnCommandQueued(func(thing string) {
			mu.Lock()
			heard[id] = append(heard[id], thing)
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
		nodes[id] = n
	}
	a := nodes["a"]
	for _, bad := range [][]byte{[]byte("no separator"), []byte("a\x00bad/thing"), []byte("\x00lamp")} {
		if err := a.Conn().Publish(a.commandSubject(), bad); err != nil {
			t.Fatal(err)
		}
	}
	a.CommandQueued("lamp")
	flush(t, a)
	waitFor(t, "b and c hear of lamp", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(heard["b"]) > 0 && len(heard["c"]) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	for _, id := range []string{"b", "c"} {
		if len(heard[id]) != 1 || heard[id][0] != "lamp" {
			t.Errorf("node %s heard %v; want [lamp]", id, heard[id])
		}
	}
	if len(heard["a"]) != 0 {
		t.Errorf("node a heard its own command: %v", heard["a"])
	}
	// Each node counted the three garbage messages (b and c had heard
	// lamp, sent after them, so they had read them).
	for _, id := range []string{"b", "c"} {
		if got := nodes[id].decodeFailed.Load(); got != 3 {
			t.Errorf("node %s counted %d undecodable messages; want 3", id, got)
		}
	}
}

// FuzzCommandQueued: any input is parsed or refused without panicking,
// and what parses is written back the same.
func FuzzCommandQueued(f *testing.F) {
	f.Add([]byte("node-1\x00lamp"))
	f.Add([]byte("\x00"))
	f.Add([]byte("n\x00a/b"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		node, thing, err := parseCommandQueued(data)
		if err != nil {
			return
		}
		if got := appendCommandQueued(nil, node, thing); !bytes.Equal(got, data) {
			t.Fatalf("round trip of %q = %q", data, got)
		}
	})
}
