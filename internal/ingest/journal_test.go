package ingest

import (
	"bytes"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
)

func TestRecordRoundTrip(t *testing.T) {
	in := []core.Message{
		{Topic: "things/a/telemetry", Payload: []byte(`{"t":1}`), QoS: 1, ClientID: "a-1", Thing: "a", Received: time.Unix(1700000000, 123456789), Protocol: "mqtt"},
		{Topic: "x", QoS: 2, Retain: true, Received: time.Unix(0, 0), Protocol: "http"},
		{Topic: "things/é/ü", Payload: bytes.Repeat([]byte{0, 255}, 5000), Received: time.Unix(-5, 0)},
		{Topic: "things/az/telemetry", Payload: []byte(`{}`), QoS: 1, Thing: "az", Received: time.Unix(7, 0), Protocol: "mqtt",
			Properties: []core.Property{{Key: "$.ct", Value: "application/json"}, {Key: "alert", Value: "high"}, {Key: "alert", Value: ""}, {Key: "", Value: "é"}}},
	}
	for _, m := range in {
		got, err := decode(encode(m))
		if err != nil {
			t.Fatalf("decode(encode(%v)): %v", m.Topic, err)
		}
		if got.Topic != m.Topic || !bytes.Equal(got.Payload, m.Payload) || got.QoS != m.QoS || got.Retain != m.Retain ||
			got.ClientID != m.ClientID || got.Thing != m.Thing || !got.Received.Equal(m.Received) || got.Protocol != m.Protocol ||
			!reflect.DeepEqual(got.Properties, m.Properties) {
			t.Fatalf("round trip changed the message:\n got %+v\nwant %+v", got, m)
		}
	}
}

// TestOldRecordsStillDecode: a journal written before user properties
// (record version 1, laid out by hand here) is still read after an
// upgrade, and a message without properties is still written that way.
func TestOldRecordsStillDecode(t *testing.T) {
	v1 := []byte{1, 1 << 1, 2, // version 1, QoS 1, received 1 ns
		3, 'a', '/', 'b', 1, 'x', 0, 1, 'a', 4, 'm', 'q', 't', 't'}
	m, err := decode(v1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Topic != "a/b" || string(m.Payload) != "x" || m.QoS != 1 || m.Thing != "a" || m.Protocol != "mqtt" || m.Properties != nil {
		t.Fatalf("version 1 record decoded as %+v", m)
	}
	if got := encode(m); !bytes.Equal(got, v1) {
		t.Fatalf("a message without properties encodes as % x; want the version 1 record % x", got, v1)
	}
}

func TestDecodeRefusesDamagedRecords(t *testing.T) {
	good := encode(core.Message{Topic: "a/b", Payload: []byte("xyz"), QoS: 1, Thing: "a", Received: time.Now()})
	for name, rec := range map[string][]byte{
		"empty":         nil,
		"version":       append([]byte{9}, good[1:]...),
		"qos 3":         append([]byte{recordVersion, 3 << 1}, good[2:]...),
		"truncated":     good[:len(good)-1],
		"trailing byte": append(append([]byte(nil), good...), 0),
		"huge length":   append(append([]byte(nil), good[:3]...), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"v2 no count":   append([]byte{recordVersionProps}, good[1:]...),
		"v2 zero props": append(append([]byte{recordVersionProps}, good[1:]...), 0),
		"v2 huge count": append(append([]byte{recordVersionProps}, good[1:]...), 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0),
		"v2 short prop": append(append([]byte{recordVersionProps}, good[1:]...), 1, 1, 'k'),
	} {
		if _, err := decode(rec); err == nil {
			t.Errorf("%s: decode accepted a damaged record", name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(core.Message{Topic: "things/a/telemetry", Payload: []byte(`{"t":1}`), QoS: 1, Thing: "a", Received: time.Unix(1, 2)}))
	f.Add([]byte{recordVersion, 2, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Add(encode(core.Message{Topic: "t", Properties: []core.Property{{Key: "k", Value: "v"}, {Key: "k", Value: ""}}}))
	f.Fuzz(func(t *testing.T, rec []byte) {
		m, err := decode(rec)
		if err != nil {
			return
		}
		// What decodes encodes back to a record that decodes the same.
		m2, err := decode(encode(m))
		if err != nil || m2.Topic != m.Topic || !bytes.Equal(m2.Payload, m.Payload) || m2.QoS != m.QoS || m2.Thing != m.Thing ||
			!reflect.DeepEqual(m2.Properties, m.Properties) {
			t.Fatalf("re-encoding changed the message: %v", err)
		}
	})
}

// consumer records what the journal applies and plays the telemetry
// store: applied is the last sequence number it "stored".
type consumer struct {
	mu      sync.Mutex
	seqs    []uint64
	topics  []string
	applied atomic.Uint64
}

// Durable wants every topic but "skip".
func (c *consumer) Durable(topic string) bool { return topic != "skip" }

// ApplyDurable records m.
func (c *consumer) ApplyDurable(m core.Message) { c.apply(m) }

func (c *consumer) apply(m core.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seqs = append(c.seqs, m.Seq)
	c.topics = append(c.topics, m.Topic)
}

func (c *consumer) snapshot() ([]uint64, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint64(nil), c.seqs...), append([]string(nil), c.topics...)
}

func open(t *testing.T, dir string, c *consumer) *Journal {
	t.Helper()
	j, err := Open(Options{Dir: dir, NoSync: true, Applied: c.applied.Load})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestAppliesInSequenceOrderFromManyAppenders(t *testing.T) {
	c := &consumer{}
	j := open(t, t.TempDir(), c)
	if n, err := j.Start(c); err != nil || n != 0 {
		t.Fatalf("Start on an empty journal: replayed %d, %v", n, err)
	}
	if j.Wants("skip") || !j.Wants("things/a/telemetry") {
		t.Fatal("Wants does not follow the consumer's Durable")
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if _, err := j.Append(core.Message{Topic: fmt.Sprintf("g%d/%d", g, i), Received: time.Now()}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	j.Drain()
	seqs, _ := c.snapshot()
	if len(seqs) != 1600 {
		t.Fatalf("applied %d messages, want 1600", len(seqs))
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("message %d applied with seq %d: not in sequence order", i, s)
		}
	}
	if _, err := j.Append(core.Message{Topic: "late"}); core.KindOf(err) != core.KindUnavailable {
		t.Fatalf("Append after Drain: %v, want an unavailable error", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReplaysOnlyWhatWasNotApplied(t *testing.T) {
	dir := t.TempDir()
	c := &consumer{}
	j := open(t, dir, c)
	if _, err := j.Start(c); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := j.Append(core.Message{Topic: fmt.Sprintf("m%d", i), Payload: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	j.Drain()
	// The store committed up to 6 before the "crash": no Close, so no
	// final checkpoint beyond what the loop took.
	c.applied.Store(6)

	c2 := &consumer{}
	c2.applied.Store(6)
	j2 := open(t, dir, c2)
	n, err := j2.Start(c2)
	if err != nil || n != 4 {
		t.Fatalf("replayed %d (%v), want 4", n, err)
	}
	seqs, topics := c2.snapshot()
	if fmt.Sprint(seqs) != "[7 8 9 10]" || fmt.Sprint(topics) != "[m6 m7 m8 m9]" {
		t.Fatalf("replayed %v %v, want seqs 7..10 of m6..m9", seqs, topics)
	}
	// New appends continue the numbering.
	if seq, err := j2.Append(core.Message{Topic: "new"}); err != nil || seq != 11 {
		t.Fatalf("Append after replay: seq %d, %v; want 11", seq, err)
	}
	c2.applied.Store(11)
	if err := j2.Close(); err != nil {
		t.Fatal(err)
	}

	// After a clean Close (checkpoint 11) nothing is replayed.
	c3 := &consumer{}
	c3.applied.Store(11)
	j3 := open(t, dir, c3)
	if n, err := j3.Start(c3); err != nil || n != 0 {
		t.Fatalf("replayed %d (%v) after a clean close, want 0", n, err)
	}
	j3.Close()
}

func TestNumberingNeverGoesBackWhenTheLogIsLost(t *testing.T) {
	c := &consumer{}
	c.applied.Store(500) // the store has seen up to 500; the journal directory is new
	j := open(t, t.TempDir(), c)
	if _, err := j.Start(c); err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	seq, err := j.Append(core.Message{Topic: "a"})
	if err != nil || seq != 501 {
		t.Fatalf("first seq %d (%v), want 501", seq, err)
	}
}
