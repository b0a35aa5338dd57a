package broker_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/policy"
	"github.com/moteiot/mote/internal/store"
)

// metricValue returns the value of the metric line that starts with
// prefix (0 if there is none).
func metricValue(t *testing.T, s *daemontest.Server, prefix string) float64 {
	t.Helper()
	for _, l := range strings.Split(getMetrics(t, s), "\n") {
		if strings.HasPrefix(l, prefix+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(l, prefix)), 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", l, err)
			}
			return v
		}
	}
	return 0
}

// waitQueued waits until at least n QoS 1/2 messages are queued or in
// flight: mochi acknowledges a publish before it queues it for subscribers.
func waitQueued(t *testing.T, s *daemontest.Server, n int) {
	t.Helper()
	daemontest.WaitFor(t, 5*time.Second, func() error {
		if got := s.Broker().Inflight(); got < n {
			return fmt.Errorf("%d messages queued; want %d", got, n)
		}
		return nil
	})
}

func waitGone(t *testing.T, s *daemontest.Server, id string) {
	t.Helper()
	daemontest.WaitFor(t, 5*time.Second, func() error {
		if s.Broker().ClientConnected(id) {
			return fmt.Errorf("%s still connected", id)
		}
		return nil
	})
}

// A device of thing "thief" connecting with the client id of thing
// "owner"'s session is refused with 0x85 (MQTT 3.1.1: return code 2)
// whether the owner is online or away with QoS 1 messages queued, before
// and after a restart; the owner stays connected, keeps its session and
// gets every message. Over MQTT 5 and 3.1.1 owners.
func TestClientIDOwnedByAnotherThing(t *testing.T) {
	s := daemontest.Start(t)
	ownerSec := s.Device(t, "owner")
	thiefSec := s.Device(t, "thief")
	const owned = `mote_mqtt_auth_failures_total{reason="client_id_owned"}`
	notClean := false

	// The thief tries the id with every protocol and clean flag; each try
	// must be refused and counted.
	steal := func(t *testing.T, id string) {
		t.Helper()
		before := metricValue(t, s, owned)
		for _, cs := range []bool{false, true} {
			c, err := s.DialV5(t, daemontest.V5Options{ClientID: id, Username: "thief", Password: thiefSec, CleanStart: cs, SessionExpiry: 3600})
			if err == nil || c.Connack == nil || c.Connack.ReasonCode != 0x85 {
				t.Fatalf("thief (v5, clean start %v) with %s's client id = %+v, %v; want CONNACK 0x85", cs, id, c, err)
			}
			cleanFlag := cs
			if _, code, err := s.DialV3(t, daemontest.V3Options{ClientID: id, Username: "thief", Password: thiefSec, Clean: &cleanFlag}); err == nil || code != 2 {
				t.Fatalf("thief (3.1.1, clean %v) with %s's client id = code %d, %v; want return code 2", cs, id, code, err)
			}
		}
		if got := metricValue(t, s, owned); got != before+4 {
			t.Fatalf("%s = %v; want %v", owned, got, before+4)
		}
	}

	for _, proto := range []string{"v5", "v3"} {
		t.Run(proto, func(t *testing.T) {
			id, topic := "owner-"+proto, "things/owner/"+proto
			var (
				inbox *daemontest.Inbox
				hang  func()
				alive func() error
			)
			// connect connects the owner; the first time it subscribes (a
			// resumed session has its subscription, and its resent messages
			// hold the packet ids paho would use for a SUBSCRIBE).
			first := true
			connect := func() {
				t.Helper()
				subscribe := first
				first = false
				if proto == "v5" {
					c, err := s.DialV5(t, daemontest.V5Options{ClientID: id, Username: "owner", Password: ownerSec, SessionExpiry: 3600})
					if err != nil {
						t.Fatalf("owner connect: %v", err)
					}
					inbox, hang = c.Inbox, func() { _ = c.Disconnect(&paho.Disconnect{}) }
					alive = func() error {
						select {
						case d := <-c.Disconnected:
							return fmt.Errorf("owner got DISCONNECT %#x", d.ReasonCode)
						default:
						}
						if rc := c.Pub(t, "things/owner/ping", 1, false, "ping"); rc != 0 {
							return fmt.Errorf("owner publish = %#x", rc)
						}
						return nil
					}
					if subscribe && c.Sub(t, topic) != 1 {
						t.Fatal("owner subscribe refused")
					}
					if !subscribe && !c.Connack.SessionPresent {
						t.Fatal("owner's session not present")
					}
					return
				}
				c, _, err := s.DialV3(t, daemontest.V3Options{ClientID: id, Username: "owner", Password: ownerSec, Clean: &notClean})
				if err != nil {
					t.Fatalf("owner connect: %v", err)
				}
				inbox, hang = c.Inbox, func() { c.Disconnect(100) }
				alive = func() error {
					if !c.IsConnectionOpen() {
						return fmt.Errorf("owner (3.1.1) lost its connection")
					}
					c.Pub(t, "things/owner/ping", 1, false, "ping")
					return nil
				}
				if subscribe && c.Sub(t, topic, 1) != 1 {
					t.Fatal("owner subscribe refused")
				}
			}

			// Online: the owner is not kicked off.
			connect()
			steal(t, id)
			if err := alive(); err != nil {
				t.Fatalf("after the thief's attempts: %v", err)
			}
			hang()
			waitGone(t, s, id)

			// Away with messages queued: they are not handed to the thief.
			pub, err := s.DialV5(t, daemontest.V5Options{ClientID: "owner-pub", Username: "owner", Password: ownerSec, CleanStart: true})
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			before := s.Broker().Inflight()
			for i := range 5 {
				p := fmt.Sprintf("%s-%d", proto, i)
				if rc := pub.Pub(t, topic, 1, false, p); rc != 0 {
					t.Fatalf("PUBACK %#x", rc)
				}
				want = append(want, p)
			}
			waitQueued(t, s, before+5)
			steal(t, id)

			// Still the owner's after a restart (the stored session keeps it).
			s.Restart(t)
			steal(t, id)

			connect()
			waitPayloads(t, inbox, topic, want)
		})
	}
}

// A message queued for a persistent session is delivered only if the
// thing may still receive it when the session resumes: mochi resends
// queued messages without asking the policy again.
func TestQueuedMessagesFollowReceivePolicy(t *testing.T) {
	s := daemontest.Start(t)
	ctx := context.Background()
	sec := s.Device(t, "dev")
	_, err := s.Registry().CreatePolicy(ctx, "no-secret", "", policy.Document{Statements: []policy.Statement{
		{Effect: policy.Deny, Actions: []policy.Action{policy.Receive}, Topics: []string{"things/dev/secret/#"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	notClean := false
	const denied = `mote_mqtt_policy_denied_total{action="receive"}`

	for _, proto := range []string{"v5", "v3"} {
		t.Run(proto, func(t *testing.T) {
			if _, err := s.Registry().UpdateThing(ctx, "dev", store.ThingPatch{Policies: []string{}}); err != nil {
				t.Fatal(err)
			}
			id := "dev-" + proto
			open, secret := "things/dev/open/"+proto, "things/dev/secret/"+proto
			var (
				inbox *daemontest.Inbox
				hang  func()
			)
			connect := func(subscribe bool) {
				t.Helper()
				if proto == "v5" {
					c, err := s.DialV5(t, daemontest.V5Options{ClientID: id, Username: "dev", Password: sec, SessionExpiry: 3600})
					if err != nil {
						t.Fatal(err)
					}
					inbox, hang = c.Inbox, func() { _ = c.Disconnect(&paho.Disconnect{}) }
					if subscribe && c.Sub(t, "things/dev/+/"+proto) != 1 {
						t.Fatal("subscribe refused")
					}
					return
				}
				c, _, err := s.DialV3(t, daemontest.V3Options{ClientID: id, Username: "dev", Password: sec, Clean: &notClean})
				if err != nil {
					t.Fatal(err)
				}
				inbox, hang = c.Inbox, func() { c.Disconnect(100) }
				if subscribe && c.Sub(t, "things/dev/+/"+proto, 1) != 1 {
					t.Fatal("subscribe refused")
				}
			}
			connect(true)
			hang()
			waitGone(t, s, id)

			pub := s.V5(t, "dev", sec)
			before := s.Broker().Inflight()
			pub.Pub(t, open, 1, false, "o1")
			pub.Pub(t, secret, 1, false, "s1")
			pub.Pub(t, open, 1, false, "o2")
			waitQueued(t, s, before+3)

			// Receive on the secret topics is taken away while the session
			// is away with a message queued on one of them.
			if _, err := s.Registry().UpdateThing(ctx, "dev", store.ThingPatch{Policies: []string{"no-secret"}}); err != nil {
				t.Fatal(err)
			}
			deniedBefore := metricValue(t, s, denied)
			connect(false)
			waitPayloads(t, inbox, open, []string{"o1", "o2"})
			inbox.None(t, secret, 300*time.Millisecond)
			if got := metricValue(t, s, denied); got < deniedBefore+1 {
				t.Fatalf("%s = %v; want at least %v (the queued message dropped)", denied, got, deniedBefore+1)
			}
		})
	}
}

// Client ids longer than --max-client-id-length (128 by default) are
// refused with 0x85 (3.1.1: return code 2) and counted; 128 bytes pass.
func TestMaxClientIDLength(t *testing.T) {
	s := daemontest.Start(t)
	sec := s.Device(t, "dev")
	const tooLong = `mote_mqtt_auth_failures_total{reason="client_id_too_long"}`
	for _, n := range []int{129, 65535} {
		id := strings.Repeat("i", n)
		c, err := s.DialV5(t, daemontest.V5Options{ClientID: id, Username: "dev", Password: sec, CleanStart: true})
		if err == nil || c.Connack == nil || c.Connack.ReasonCode != 0x85 {
			t.Fatalf("v5 with a %d-byte client id = %+v, %v; want CONNACK 0x85", n, c, err)
		}
		if _, code, err := s.DialV3(t, daemontest.V3Options{ClientID: id, Username: "dev", Password: sec}); err == nil || code != 2 {
			t.Fatalf("3.1.1 with a %d-byte client id = code %d, %v; want return code 2", n, code, err)
		}
	}
	if got := metricValue(t, s, tooLong); got != 4 {
		t.Fatalf("%s = %v; want 4", tooLong, got)
	}
	id := strings.Repeat("i", 128)
	if _, err := s.DialV5(t, daemontest.V5Options{ClientID: id, Username: "dev", Password: sec, CleanStart: true}); err != nil {
		t.Fatalf("v5 with a 128-byte client id: %v", err)
	}
	if _, _, err := s.DialV3(t, daemontest.V3Options{ClientID: id + "", Username: "dev", Password: sec}); err != nil {
		t.Fatalf("3.1.1 with a 128-byte client id: %v", err)
	}
}
