package bridge

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/moteiot/mote/internal/mosquittotest"
)

type injected struct {
	topic, payload, origin string
	qos                    byte
}

type fakeInjector struct {
	mu  sync.Mutex
	got []injected
}

func (f *fakeInjector) Inject(topic string, payload []byte, qos byte, retain bool, origin string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, injected{topic, string(payload), origin, qos})
	return nil
}

func (f *fakeInjector) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 15s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func remote(t *testing.T, addr string) paho.Client {
	t.Helper()
	cl := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano()%1e9)))
	if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(0) })
	return cl
}

func publish(t *testing.T, cl paho.Client, topic, payload string) {
	t.Helper()
	if tok := cl.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

func start(t *testing.T, spec string, mod func(*Options)) (*fakeInjector, *Manager) {
	t.Helper()
	c, err := Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	inj := &fakeInjector{}
	o := Options{Bridges: []Config{c}, Injector: inj, Metrics: prometheus.NewRegistry()}
	if mod != nil {
		mod(&o)
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return inj, m
}

func (m *Manager) isConnected(name string) bool {
	return testutil.ToFloat64(m.connected.WithLabelValues(name)) == 1
}

// TestInboundBridge: messages published on the real mosquitto under the
// bridge's filter come into Mote under the local prefix; mosquitto is
// killed and restarted on the same port, the bridge reconnects and
// subscribes again.
func TestInboundBridge(t *testing.T) {
	mq := mosquittotest.Start(t, "")
	inj, m := start(t, mq.URL()+"/?name=plant&from=sensors/%23&from=alarms/%2B&to=plant/&qos=1", nil)
	waitFor(t, "bridge connected", func() bool { return m.isConnected("plant") })
	cl := remote(t, mq.Addr())
	// The subscription is made after CONNACK: publish until one arrives.
	waitFor(t, "first message bridged", func() bool {
		publish(t, cl, "sensors/a/temp", `{"t":1}`)
		return inj.count() > 0
	})
	publish(t, cl, "alarms/fire", `x`)
	publish(t, cl, "other/topic", `not bridged`)
	publish(t, cl, "alarms/fire", `y`)
	waitFor(t, "alarms bridged", func() bool {
		inj.mu.Lock()
		defer inj.mu.Unlock()
		return inj.got[len(inj.got)-1].payload == "y"
	})
	inj.mu.Lock()
	for _, g := range inj.got {
		if !strings.HasPrefix(g.topic, "plant/sensors/a/temp") && g.topic != "plant/alarms/fire" || g.origin != "bridge:plant" || g.qos != 1 {
			t.Errorf("injected %+v", g)
		}
	}
	inj.mu.Unlock()

	mq.Kill()
	waitFor(t, "bridge sees the broker gone", func() bool { return !m.isConnected("plant") })
	mq.Restart()
	waitFor(t, "bridge reconnected", func() bool { return m.isConnected("plant") })
	cl2 := remote(t, mq.Addr())
	before := inj.count()
	waitFor(t, "bridged after the restart", func() bool {
		publish(t, cl2, "sensors/b", `after`)
		return inj.count() > before
	})
	if n := testutil.ToFloat64(m.messages.WithLabelValues("plant", resultAccepted)); int(n) != inj.count() {
		t.Errorf("accepted counter %v; want %d", n, inj.count())
	}
}

// TestInboundBridgeLimits: a flood beyond --bridge-rate-limit and a
// payload beyond the largest packet are dropped and counted.
func TestInboundBridgeLimits(t *testing.T) {
	mq := mosquittotest.Start(t, "")
	inj, m := start(t, mq.URL()+"/?name=flood&from=f/%23&to=r/", func(o *Options) { o.RateLimit, o.MaxPayload = 5, 100 })
	waitFor(t, "bridge connected", func() bool { return m.isConnected("flood") })
	cl := remote(t, mq.Addr())
	waitFor(t, "subscribed", func() bool {
		publish(t, cl, "f/probe", "p")
		return inj.count() > 0
	})
	publish(t, cl, "f/big", strings.Repeat("x", 101))
	for i := range 100 {
		publish(t, cl, "f/x", fmt.Sprint(i))
	}
	waitFor(t, "flood counted", func() bool {
		acc := testutil.ToFloat64(m.messages.WithLabelValues("flood", resultAccepted))
		lim := testutil.ToFloat64(m.messages.WithLabelValues("flood", resultRateLimited))
		big := testutil.ToFloat64(m.messages.WithLabelValues("flood", resultTooLarge))
		return big == 1 && lim > 0 && int(acc) == inj.count() && int(acc+lim+big) >= 102
	})
	for _, g := range inj.got {
		if g.topic == "r/f/big" {
			t.Errorf("the oversize message was injected")
		}
	}
}

func TestParse(t *testing.T) {
	c, err := Parse("mqtts://u:p%40ss@h/?name=b1&from=a/%23&from=b/%2B/c&to=r/&qos=1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Broker != "ssl://h:8883" || c.User != "u" || c.Pass != "p@ss" || len(c.From) != 2 || c.From[1] != "b/+/c" || c.To != "r/" || c.QoS != 1 {
		t.Errorf("Parse = %+v", c)
	}
	for _, bad := range []string{
		"http://h/?name=b&from=a&to=r/",
		"mqtt://h/?from=a&to=r/",
		"mqtt://h/?name=b&to=r/",
		"mqtt://h/?name=b&from=a/%23/b&to=r/",
		"mqtt://h/?name=b&from=a",
		"mqtt://h/?name=b&from=a&to=things/x/",
		"mqtt://h/?name=b&from=a&to=%24SYS/",
		"mqtt://h/?name=b&from=a&to=r/%23",
		"mqtt://h/?name=b&from=a&to=r/&qos=2",
		"mqtt://h/?name=b&from=a&to=r/&bogus=1",
		"mqtt://h:0/?name=b&from=a&to=r/",
		"mqtt://h/path?name=b&from=a&to=r/",
		"mqtt://h/?name=b&from=a&to=r/&ca=/x",
	} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = nil; want an error", bad)
		}
	}
	if _, err := Parse("mqtt://u:topsecret@h/?name=b&from=a&to=r/&qos=9"); err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("error %v; want one without the password", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("mqtts://u:p@h:8883/?name=b1&from=a/%23&to=r/&qos=1")
	f.Add("mqtt://h/?name=b&from=+/x&to=r/")
	f.Fuzz(func(t *testing.T, spec string) {
		c, err := Parse(spec)
		if err != nil {
			return
		}
		if c.To == "" || strings.HasPrefix(c.To, "things/") || strings.HasPrefix(c.To, "$") || len(c.From) == 0 {
			t.Fatalf("Parse(%q) = %+v; want it refused", spec, c)
		}
		for _, f := range c.From {
			if !validFilter(f) {
				t.Fatalf("Parse(%q) took filter %q", spec, f)
			}
		}
	})
}
