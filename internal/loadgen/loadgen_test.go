package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
)

// mote starts a Mote server and returns options for a thing "bench" on
// its plain MQTT listener, with small bounds.
func mote(t *testing.T) (*daemontest.Server, Options) {
	t.Helper()
	s := daemontest.Start(t)
	secret := s.Device(t, "bench")
	o := DefaultOptions()
	o.Addr, o.Username, o.Password, o.Root = s.MQTT, "bench", secret, "things/bench"
	o.Broker = "mote"
	o.Pubs, o.Subs, o.Count = 5, 2, 1000
	o.Duration, o.Drain, o.MaxDrain = 20*time.Second, 5*time.Second, 20*time.Second
	o.Conns, o.Dialers = 50, 8
	return s, o
}

// run runs o and returns its result as the JSON line mote bench prints,
// decoded into a map, so the test checks the wire names.
func run(t *testing.T, o Options) (Result, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run(%s qos %d): %v", o.Topology, o.QoS, err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", b)
	return r, m
}

func TestScenariosAgainstMote(t *testing.T) {
	_, base := mote(t)
	for _, tc := range []struct {
		topology   string
		pubs, subs int
		qos        byte
		rate       float64
		perSub     bool // every subscriber gets every message
	}{
		{FanIn, 5, 1, 0, 0, true},
		{FanIn, 5, 1, 1, 0, true},
		{FanOut, 1, 5, 0, 0, true},
		{FanOut, 1, 5, 1, 0, true},
		{Pairs, 5, 5, 0, 0, false},
		{Pairs, 5, 5, 1, 0, false},
		{FanIn, 5, 1, 1, 2000, true}, // fixed rate
	} {
		o := base
		o.Topology, o.Pubs, o.Subs, o.QoS, o.Rate = tc.topology, tc.pubs, tc.subs, tc.qos, tc.rate
		r, m := run(t, o)
		want := int64(o.Count)
		if tc.perSub {
			want *= int64(o.Subs)
		}
		if r.Sent != int64(o.Count) || r.Expected != want || r.Received != want || r.Lost != 0 || r.Dup != 0 || r.Error != "" {
			t.Errorf("%s qos %d rate %g: sent %d expected %d received %d lost %d dup %d error %q; want sent %d, received %d, lost 0, dup 0, no error",
				tc.topology, tc.qos, tc.rate, r.Sent, r.Expected, r.Received, r.Lost, r.Dup, r.Error, o.Count, want)
		}
		if tc.qos == 1 && r.Acked != r.Sent {
			t.Errorf("%s qos 1: acked %d; want %d", tc.topology, r.Acked, r.Sent)
		}
		for _, k := range []string{"p50_us", "p90_us", "p99_us", "max_us", "msgs_per_sec"} {
			v, ok := m[k].(float64)
			if !ok || v <= 0 {
				t.Errorf("%s qos %d: %s = %v; want a positive number", tc.topology, tc.qos, k, m[k])
			}
		}
		if r.P50 > r.P90 || r.P90 > r.P99 || r.P99 > r.Max {
			t.Errorf("%s: p50 %g p90 %g p99 %g max %g; want non-decreasing", tc.topology, r.P50, r.P90, r.P99, r.Max)
		}
		if tc.rate > 0 {
			// 1000 messages at 2000/s take about 0.5 s: the pacing acted.
			if r.PubSeconds < 0.4 {
				t.Errorf("fixed rate %g: published %d in %.3fs; want about %.1fs", tc.rate, r.Sent, r.PubSeconds, float64(r.Sent)/tc.rate)
			}
		}
	}
}

func TestConnectAndIdleAgainstMote(t *testing.T) {
	_, o := mote(t)
	o.Topology = Connect
	r, m := run(t, o)
	if r.ConnectErrors != 0 || r.Error != "" {
		t.Errorf("connect: %d errors (%s); want none", r.ConnectErrors, r.Error)
	}
	if v, ok := m["connects_per_sec"].(float64); !ok || v <= 0 {
		t.Errorf("connect: connects_per_sec = %v; want a positive number", m["connects_per_sec"])
	}

	o.Topology, o.QoS = Idle, 1
	r, m = run(t, o)
	if r.ConnectErrors != 0 || r.Error != "" {
		t.Errorf("idle: %d errors (%s); want none", r.ConnectErrors, r.Error)
	}
	for _, k := range []string{"connects_per_sec", "subscribes_per_sec"} {
		if v, ok := m[k].(float64); !ok || v <= 0 {
			t.Errorf("idle: %s = %v; want a positive number", k, m[k])
		}
	}
}

// A subscriber that goes away midway must show up as loss: the
// accounting can fail.
func TestLossIsReported(t *testing.T) {
	_, o := mote(t)
	o.Topology, o.Pubs, o.Subs, o.Count = FanOut, 1, 2, 2000
	o.Drain = 500 * time.Millisecond
	o.Rate = 4000 // still publishing when the subscriber leaves
	o.killSubAfter = 100
	r, _ := run(t, o)
	if r.Sent != int64(o.Count) {
		t.Fatalf("sent %d; want %d", r.Sent, o.Count)
	}
	// Subscriber 1 got everything; subscriber 0 got killSubAfter.
	if r.Received >= r.Expected || r.Lost < int64(o.Count)-o.killSubAfter-50 || r.Lost != r.Expected-r.Received || r.LostPct <= 0 {
		t.Errorf("expected %d received %d lost %d (%.1f%%); want about %d lost", r.Expected, r.Received, r.Lost, r.LostPct, int64(o.Count)-o.killSubAfter)
	}
}

func TestRefusedCredentials(t *testing.T) {
	_, o := mote(t)
	o.Password = "wrong"
	_, err := Run(context.Background(), o)
	var ce *ConnackError
	if !errors.As(err, &ce) || ce.Code != 4 {
		t.Fatalf("Run with a wrong password: %v; want CONNACK return code 4 (bad user name or password)", err)
	}
}

func TestTLSAgainstMote(t *testing.T) {
	s, o := mote(t)
	o.Addr, o.TLS = s.MQTTS, s.TLSConfig(nil)
	o.Topology, o.QoS = FanIn, 1
	r, _ := run(t, o)
	if want := int64(o.Count * o.Subs); !r.TLS || r.Received != want || r.Lost != 0 || r.Dup != 0 {
		t.Errorf("TLS fan-in: tls %v received %d lost %d dup %d; want tls, %d received, none lost", r.TLS, r.Received, r.Lost, r.Dup, want)
	}
	o.Topology = Connect
	r, _ = run(t, o)
	if r.ConnectErrors != 0 || r.ConnectsPerSec <= 0 {
		t.Errorf("TLS connect: %d errors, %g connects/s; want none and a rate", r.ConnectErrors, r.ConnectsPerSec)
	}
}
