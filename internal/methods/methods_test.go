package methods_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/methods"
)

const wait = 10 * time.Second

// call posts a method call over the REST API and returns the status and
// the decoded body.
func call(tb testing.TB, s *daemontest.Server, thing, method, body string) (int, map[string]any) {
	tb.Helper()
	req, err := http.NewRequest("POST", s.API+"/api/v1/things/"+thing+"/methods/"+method, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("POST methods/%s: %v", method, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatalf("POST methods/%s: %d, body is not JSON: %q", method, res.StatusCode, b)
	}
	return res.StatusCode, m
}

// responder is a device that answers direct methods with answer (nil:
// it subscribes and never answers).
type responder struct {
	c    *paho.Client
	seen chan string // request topics
}

// answerFunc makes a device's answer to a request.
type answerFunc func(method string, payload []byte) (status int, body []byte)

// echo answers 200 {"method": M, "echo": request payload}.
func echo(method string, payload []byte) (int, []byte) {
	return 200, fmt.Appendf(nil, `{"method":%q,"echo":%s}`, method, payload)
}

// respond connects thing over MQTT 5, subscribes to its method requests
// and answers each with answer (at QoS 1, off paho's callback goroutine).
func respond(tb testing.TB, s *daemontest.Server, thing, secret string, answer answerFunc) *responder {
	tb.Helper()
	conn, err := net.Dial("tcp", s.MQTT)
	if err != nil {
		tb.Fatal(err)
	}
	r := &responder{seen: make(chan string, 100)}
	prefix := "$mote/things/" + thing + "/methods/"
	r.c = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case r.seen <- pr.Packet.Topic:
			default:
			}
			if answer == nil {
				return true, nil
			}
			method, id, ok := strings.Cut(strings.TrimPrefix(pr.Packet.Topic, prefix), "/")
			if !ok {
				return true, nil
			}
			status, body := answer(method, pr.Packet.Payload)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				_, _ = r.c.Publish(ctx, &paho.Publish{Topic: methods.ResponseTopic(thing, status, id), QoS: 1, Payload: body})
			}()
			return true, nil
		}},
		OnClientError: func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := r.c.Connect(ctx, &paho.Connect{
		ClientID: thing, CleanStart: true, KeepAlive: 30,
		Username: thing, UsernameFlag: true, Password: []byte(secret), PasswordFlag: true,
	}); err != nil {
		tb.Fatalf("connect %s: %v", thing, err)
	}
	tb.Cleanup(func() { _ = r.c.Disconnect(&paho.Disconnect{}) })
	if _, err := r.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: prefix + "+/+", QoS: 1}}}); err != nil {
		tb.Fatalf("subscribe: %v", err)
	}
	return r
}

// connected waits until the server sees thing as connected.
func connected(tb testing.TB, s *daemontest.Server, thing string) {
	tb.Helper()
	daemontest.WaitFor(tb, wait, func() error {
		if !s.Broker().Connected(thing) {
			return fmt.Errorf("%s not connected", thing)
		}
		return nil
	})
}

func TestMethodRoundTrip(t *testing.T) {
	s := daemontest.Start(t)
	secret := s.Device(t, "lamp-1")
	respond(t, s, "lamp-1", secret, echo)
	connected(t, s, "lamp-1")

	status, body := call(t, s, "lamp-1", "reboot", `{"payload": {"delay": 5}, "timeoutSeconds": 10}`)
	if status != 200 {
		t.Fatalf("POST methods/reboot = %d %v; want 200", status, body)
	}
	got, _ := json.Marshal(body)
	if want := `{"payload":{"echo":{"delay":5},"method":"reboot"},"status":200}`; string(got) != want {
		t.Errorf("POST methods/reboot = %s; want %s", got, want)
	}

	// No body: the device gets null and the default timeout applies.
	status, body = call(t, s, "lamp-1", "ping", "")
	if status != 200 || fmt.Sprint(body["payload"]) != "map[echo:<nil> method:ping]" {
		t.Errorf("POST methods/ping (no body) = %d %v; want 200 with echo null", status, body)
	}
}

// TestMethodStatusAndPayloadKinds checks that the device's status is passed
// on as it is, and that an answer that is not JSON becomes a JSON string.
func TestMethodStatusAndPayloadKinds(t *testing.T) {
	s := daemontest.Start(t)
	secret := s.Device(t, "dev")
	respond(t, s, "dev", secret, func(method string, _ []byte) (int, []byte) {
		switch method {
		case "fail":
			return 500, []byte(`{"error":"disk full"}`)
		case "text":
			return 201, []byte("plain text")
		default:
			return 404, nil
		}
	})
	connected(t, s, "dev")
	for _, tc := range []struct {
		method string
		want   string
	}{
		{"fail", `{"payload":{"error":"disk full"},"status":500}`},
		{"text", `{"payload":"plain text","status":201}`},
		{"nothing", `{"payload":null,"status":404}`},
	} {
		code, body := call(t, s, "dev", tc.method, `{"timeoutSeconds": 10}`)
		got, _ := json.Marshal(body)
		if code != 200 || string(got) != tc.want {
			t.Errorf("POST methods/%s = %d %s; want 200 %s", tc.method, code, got, tc.want)
		}
	}
}

func TestMethodOfflineIs404(t *testing.T) {
	s := daemontest.Start(t)
	s.Device(t, "sleepy")
	for _, thing := range []string{"sleepy", "no-such-thing"} {
		code, body := call(t, s, thing, "reboot", `{"timeoutSeconds": 300}`)
		if code != 404 || body["type"] != "https://mote.dev/problems/not_found" {
			t.Errorf("POST things/%s/methods/reboot = %d %v; want 404 not_found", thing, code, body)
		}
	}
}

func TestMethodSilentDeviceIs504(t *testing.T) {
	s := daemontest.Start(t)
	secret := s.Device(t, "mute")
	r := respond(t, s, "mute", secret, nil)
	connected(t, s, "mute")
	code, body := call(t, s, "mute", "reboot", `{"timeoutSeconds": 1}`)
	if code != 504 || body["type"] != "https://mote.dev/problems/timeout" {
		t.Fatalf("POST methods/reboot to a silent device = %d %v; want 504 timeout", code, body)
	}
	select {
	case topic := <-r.seen:
		if !strings.HasPrefix(topic, "$mote/things/mute/methods/reboot/") {
			t.Errorf("device got request on %q", topic)
		}
	default:
		t.Error("the device never received the request")
	}
}

func TestMethodValidation(t *testing.T) {
	s := daemontest.Start(t)
	s.Device(t, "dev")
	for _, tc := range []struct {
		method, body, field string
		status              int
	}{
		{"reboot", `{"timeoutSeconds": 0}`, "timeoutSeconds", 400},
		{"reboot", `{"timeoutSeconds": 301}`, "timeoutSeconds", 400},
		{"res", `{}`, "method", 400},
		{"a+b", `{}`, "method", 400},
		{"reboot", `{"payload": 1, "extra": true}`, "extra", 400},
		{"reboot", `{"payload": "` + strings.Repeat("x", methods.DefaultMaxPayload) + `"}`, "payload", 413},
	} {
		code, body := call(t, s, "dev", tc.method, tc.body)
		if code != tc.status || body["field"] != tc.field {
			t.Errorf("POST methods/%s %.40s = %d field %v; want %d field %s", tc.method, tc.body, code, body["field"], tc.status, tc.field)
		}
	}
}

// TestMethodsDoNotBlockEachOther keeps a call to a silent device pending
// while many calls to other devices complete.
func TestMethodsDoNotBlockEachOther(t *testing.T) {
	s := daemontest.Start(t)
	respond(t, s, "mute", s.Device(t, "mute"), nil)
	connected(t, s, "mute")
	const n = 20
	for i := range n {
		thing := fmt.Sprintf("dev-%d", i)
		respond(t, s, thing, s.Device(t, thing), echo)
		connected(t, s, thing)
	}
	silent := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer close(silent)
		req, _ := http.NewRequestWithContext(ctx, "POST", s.API+"/api/v1/things/mute/methods/wait", strings.NewReader(`{"timeoutSeconds": 60}`))
		req.Header.Set("Authorization", "Bearer "+s.Token)
		req.Header.Set("Content-Type", "application/json")
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 5 {
				code, body := call(t, s, fmt.Sprintf("dev-%d", i), "m", fmt.Sprintf(`{"payload": %d}`, j))
				if code != 200 || body["payload"].(map[string]any)["echo"] != float64(j) {
					t.Errorf("dev-%d call %d = %d %v", i, j, code, body)
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-silent:
		t.Fatal("the call to the silent device ended before the others")
	default:
	}
}

// TestMethodAnswerFromAnotherThingIgnored: only the called thing can answer.
func TestMethodAnswerFromAnotherThingIgnored(t *testing.T) {
	svc := methods.New(methods.Options{Publisher: publisherFunc(func(topic string, _ []byte) {}), Presence: always{}})
	done := make(chan error, 1)
	go func() {
		_, err := svc.Invoke(context.Background(), "a", "m", nil, time.Second)
		done <- err
	}()
	// The id is not known to the test, so an answer from "b" on a's topic
	// shape cannot match; a made-up id is dropped too.
	svc.HandleMessage(msg("$mote/things/a/methods/res/200/nope", "a"))
	if err := <-done; err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("Invoke with no valid answer = %v; want a timeout", err)
	}
}

// TestMethodRoundTripV3: an MQTT 3.1.1 device answers the same way.
func TestMethodRoundTripV3(t *testing.T) {
	s := daemontest.Start(t)
	secret := s.Device(t, "old")
	dev := s.V3(t, "old", secret)
	if rc := dev.Sub(t, "$mote/things/old/methods/+/+", 1); rc != 1 {
		t.Fatalf("SUBACK %#x", rc)
	}
	connected(t, s, "old")
	type result struct {
		code int
		body map[string]any
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("POST", s.API+"/api/v1/things/old/methods/read", strings.NewReader(`{"payload": "temp"}`))
		req.Header.Set("Authorization", "Bearer "+s.Token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{}
			return
		}
		defer res.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(res.Body).Decode(&m)
		done <- result{res.StatusCode, m}
	}()
	m := dev.Inbox.Wait(t, "", wait)
	method, id, _ := strings.Cut(strings.TrimPrefix(m.Topic, "$mote/things/old/methods/"), "/")
	if method != "read" || m.Payload != `"temp"` || m.QoS != 1 {
		t.Fatalf("device got %+v", m)
	}
	if tok := dev.Publish(methods.ResponseTopic("old", 200, id), 1, false, `21.5`); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("answer: %v", tok.Error())
	}
	r := <-done
	if r.code != 200 || r.body["status"] != 200.0 || r.body["payload"] != 21.5 {
		t.Errorf("POST methods/read = %d %v; want 200 {status 200, payload 21.5}", r.code, r.body)
	}
}
