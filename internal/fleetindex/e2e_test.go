package fleetindex_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/httpapi/wire"
	"github.com/moteiot/mote/internal/policy"
)

const wait = 10 * time.Second

// device is a real MQTT 5 client (paho) that records what it receives.
type device struct {
	c    *paho.Client
	mu   sync.Mutex
	seen []string // topic + " " + payload
}

func (d *device) received(prefix string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, s := range d.seen {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func connect(tb testing.TB, s *daemontest.Server, thing, secret string) *device {
	tb.Helper()
	conn, err := net.Dial("tcp", s.MQTT)
	if err != nil {
		tb.Fatal(err)
	}
	d := &device{}
	d.c = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			d.mu.Lock()
			d.seen = append(d.seen, pr.Packet.Topic+" "+string(pr.Packet.Payload))
			d.mu.Unlock()
			return true, nil
		}},
		OnClientError: func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := d.c.Connect(ctx, &paho.Connect{ClientID: thing, CleanStart: true, KeepAlive: 30,
		Username: thing, UsernameFlag: true, Password: []byte(secret), PasswordFlag: true}); err != nil {
		tb.Fatalf("connect %s: %v", thing, err)
	}
	return d
}

func (d *device) publish(tb testing.TB, topic, payload string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := d.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
		tb.Fatalf("publish %s: %v", topic, err)
	}
}

// TestFleetEndToEnd: a whole server. Devices report firmware over MQTT,
// an operator selects them with ?q=, counts them, defines a dynamic
// group; a monitoring client sees membership events as devices connect,
// report and disconnect; after a restart the index answers the same.
func TestFleetEndToEnd(t *testing.T) {
	s := daemontest.Start(t)
	ctx := t.Context()
	api := apiclient.New(s.API, s.Token)
	for i, site := range []string{"ams", "ams", "rtm"} {
		name := fmt.Sprintf("dev%d", i+1)
		if _, err := api.CreateThing(ctx, apiclient.NewThing{Name: name, Attributes: map[string]string{"site": site}}); err != nil {
			t.Fatal(err)
		}
	}
	// A monitor may subscribe to the group events.
	if _, err := s.Registry().CreatePolicy(ctx, "monitor", "", policy.Document{Statements: []policy.Statement{
		{Effect: policy.Allow, Actions: []policy.Action{policy.Subscribe, policy.Receive}, Topics: []string{"$mote/events/groups/#"}}}}); err != nil {
		t.Fatal(err)
	}
	mon := connect(t, s, "monitor", s.Device(t, "monitor", "monitor"))
	subCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if _, err := mon.c.Subscribe(subCtx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$mote/events/groups/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	g, err := api.CreateGroup(ctx, apiclient.NewGroup{Name: "old-ams", Query: "attributes.site = 'ams' AND connected = true AND version(shadow.reported.firmware) < '1.5'"})
	if err != nil || g.Query == "" {
		t.Fatalf("CreateGroup = %+v, %v", g, err)
	}

	secret1, _ := s.Registry().CreateSecret(ctx, "dev1", nil)
	d1 := connect(t, s, "dev1", secret1.Secret)
	d1.publish(t, "$aws/things/dev1/shadow/update", `{"state":{"reported":{"firmware":"1.4.9"}}}`)
	secret2, _ := s.Registry().CreateSecret(ctx, "dev2", nil)
	d2 := connect(t, s, "dev2", secret2.Secret)
	d2.publish(t, "$aws/things/dev2/shadow/update", `{"state":{"reported":{"firmware":"1.10.0"}}}`)

	daemontest.WaitFor(t, wait, func() error {
		if got := mon.received("$mote/events/groups/old-ams/added"); len(got) != 1 || !strings.Contains(got[0], `"thing":"dev1"`) {
			return fmt.Errorf("added events = %q; want one for dev1", got)
		}
		return nil
	})
	var ev struct{ Event, Group, Thing, Time string }
	if err := json.Unmarshal([]byte(strings.SplitN(mon.received("$mote/events/groups/old-ams/added")[0], " ", 2)[1]), &ev); err != nil ||
		ev.Event != "added" || ev.Group != "old-ams" || ev.Thing != "dev1" || ev.Time == "" {
		t.Errorf("event = %+v, %v", ev, err)
	}

	q := "version(shadow.reported.firmware) >= '1.5' OR attributes.site = 'rtm'"
	daemontest.WaitFor(t, wait, func() error { // dev2's report is applied off the publish path
		things, _, err := api.ListThings(ctx, apiclient.ThingQuery{Query: q})
		if err != nil {
			return err
		}
		if names := thingNames(things); !slices.Equal(names, []string{"dev2", "dev3"}) {
			return fmt.Errorf("?q=%s → %q; want [dev2 dev3]", q, names)
		}
		return nil
	})
	if n, err := api.CountThings(ctx, "connected = true AND name LIKE 'dev*'"); err != nil || n != 2 {
		t.Errorf("count = %d, %v; want 2", n, err)
	}
	members, _, err := api.GroupThings(ctx, "old-ams", apiclient.ListOptions{})
	if err != nil || !slices.Equal(thingNames(members), []string{"dev1"}) {
		t.Errorf("members = %q, %v; want [dev1]", thingNames(members), err)
	}

	// A syntax error: 400 naming the place.
	_, _, err = api.ListThings(ctx, apiclient.ThingQuery{Query: "attributes.site = 'ams' AND\nconnected = 'yes'"})
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Detail, "at 2:13") || ae.Field != "q" {
		t.Errorf("bad query: %v; want 400 at 2:13", err)
	}
	// q with another filter: 400.
	if _, _, err := api.ListThings(ctx, apiclient.ThingQuery{Query: "connected = true", Type: "x"}); !errors.As(err, &ae) || ae.Status != 400 {
		t.Errorf("q + type: %v; want 400", err)
	}

	// dev1 disconnects: it leaves the group.
	_ = d1.c.Disconnect(&paho.Disconnect{})
	daemontest.WaitFor(t, wait, func() error {
		if got := mon.received("$mote/events/groups/old-ams/removed"); len(got) != 1 || !strings.Contains(got[0], `"thing":"dev1"`) {
			return fmt.Errorf("removed events = %q; want one for dev1", got)
		}
		return nil
	})
	_ = d2.c.Disconnect(&paho.Disconnect{})
	_ = mon.c.Disconnect(&paho.Disconnect{})

	// After a restart the index is loaded again from the stores.
	s.Restart(t)
	api = apiclient.New(s.API, s.Token)
	daemontest.WaitFor(t, wait, func() error {
		things, _, err := api.ListThings(ctx, apiclient.ThingQuery{Query: "EXISTS shadow.reported.firmware"})
		if err != nil {
			return err
		}
		if names := thingNames(things); !slices.Equal(names, []string{"dev1", "dev2"}) {
			return fmt.Errorf("after restart: %q; want [dev1 dev2]", names)
		}
		return nil
	})
	g, err = api.GetGroup(ctx, "old-ams")
	if err != nil || !strings.Contains(g.Query, "version(") {
		t.Errorf("group after restart = %+v, %v", g, err)
	}
}

func thingNames(things []wire.Thing) []string {
	out := make([]string, len(things))
	for i, t := range things {
		out[i] = t.Name
	}
	return out
}
