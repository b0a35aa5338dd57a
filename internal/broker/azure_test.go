package broker_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/azureiot"
	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
)

const azureHost = "localhost"

func azureUser(dev string) string {
	return azureHost + "/" + dev + "/?api-version=2021-04-12&DeviceClientType=go-test"
}

// azureKey gives a thing a symmetricKey credential and returns the key.
func azureKey(t *testing.T, s *daemontest.Server, thing string) []byte {
	t.Helper()
	s.Thing(t, thing)
	nc, err := s.Registry().CreateSymmetricKey(context.Background(), thing, nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := base64.StdEncoding.DecodeString(nc.Key)
	if err != nil || len(k) != 32 {
		t.Fatalf("key %q: %v", nc.Key, err)
	}
	return k
}

// azureClient is an MQTT 5 client that keeps every PUBLISH it receives,
// with its properties.
type azureClient struct {
	*paho.Client
	connack *paho.Connack
	mu      sync.Mutex
	got     []*paho.Publish
	ch      chan struct{}
	gone    chan struct{}
}

func dialAzure(t *testing.T, s *daemontest.Server, clientID, user, password string, tc *tls.Config) (*azureClient, error) {
	t.Helper()
	if tc == nil {
		tc = s.TLSConfig(nil)
	}
	conn, err := tls.Dial("tcp", s.MQTTS, tc)
	if err != nil {
		return nil, err
	}
	c := &azureClient{ch: make(chan struct{}, 1), gone: make(chan struct{})}
	var once sync.Once
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.mu.Lock()
			c.got = append(c.got, pr.Packet)
			c.mu.Unlock()
			select {
			case c.ch <- struct{}{}:
			default:
			}
			return true, nil
		}},
		OnServerDisconnect: func(*paho.Disconnect) { once.Do(func() { close(c.gone) }) },
		OnClientError:      func(error) { once.Do(func() { close(c.gone) }) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true,
		Username: user, UsernameFlag: true, Password: []byte(password), PasswordFlag: password != ""})
	c.connack = ca
	if err != nil {
		_ = conn.Close()
		return c, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, nil
}

func (c *azureClient) sub(t *testing.T, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 0}}})
	if err != nil || sa.Reasons[0] >= 0x80 {
		t.Fatalf("subscribe %s: %v %v", filter, sa, err)
	}
}

func (c *azureClient) pub(t *testing.T, topic string, qos byte, payload string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)})
	if err != nil && r == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	if r == nil {
		return 0
	}
	return r.ReasonCode
}

// wait returns the first message whose topic starts with prefix.
func (c *azureClient) wait(t *testing.T, prefix string) *paho.Publish {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		for _, p := range c.got {
			if strings.HasPrefix(p.Topic, prefix) {
				c.mu.Unlock()
				return p
			}
		}
		c.mu.Unlock()
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("no message on %s*; got %v", prefix, c.topics())
		}
	}
}

func (c *azureClient) topics() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ts []string
	for _, p := range c.got {
		ts = append(ts, p.Topic)
	}
	return ts
}

func TestAzureAuth(t *testing.T) {
	s := daemontest.Start(t)
	k1 := azureKey(t, s, "dev1")
	k2 := azureKey(t, s, "dev2")
	now := time.Now()
	good := azureiot.NewSAS(k1, azureHost, "dev1", now.Add(time.Hour))

	t.Run("v5 ok", func(t *testing.T) {
		if _, err := dialAzure(t, s, "dev1", azureUser("dev1"), good, nil); err != nil {
			t.Fatalf("connect with a good SAS token: %v", err)
		}
	})
	t.Run("v3 ok", func(t *testing.T) {
		if _, code, err := s.DialV3(t, daemontest.V3Options{ClientID: "dev1", Username: azureUser("dev1"), Password: good, TLS: s.TLSConfig(nil)}); err != nil {
			t.Fatalf("v3 connect with a good SAS token = %d, %v", code, err)
		}
	})
	for _, tc := range []struct {
		name, client, user, password string
		code                         byte
	}{
		{"expired", "dev1", azureUser("dev1"), azureiot.NewSAS(k1, azureHost, "dev1", now.Add(-time.Second)), 0x87},
		{"token for another device", "dev1", azureUser("dev1"), azureiot.NewSAS(k2, azureHost, "dev2", now.Add(time.Hour)), 0x87},
		{"another device's key", "dev1", azureUser("dev1"), azureiot.NewSAS(k2, azureHost, "dev1", now.Add(time.Hour)), 0x86},
		{"bad signature", "dev1", azureUser("dev1"), strings.Replace(good, "sig=", "sig=A", 1), 0x86},
		{"forged expiry", "dev1", azureUser("dev1"), strings.Replace(good, "&se=", "&se=1", 1), 0x86},
		{"client id is not the device id", "dev2", azureUser("dev1"), good, 0x85},
		{"not a SAS token", "dev1", azureUser("dev1"), "hunter2", 0x86},
		{"malformed user name", "dev1", azureHost + "/dev1/?nothing=1", good, 0x86},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialAzure(t, s, tc.client, tc.user, tc.password, nil)
			if err == nil || c.connack == nil || c.connack.ReasonCode != tc.code {
				var code byte
				if c != nil && c.connack != nil {
					code = c.connack.ReasonCode
				}
				t.Fatalf("connect = %#x, %v; want reason %#x", code, err, tc.code)
			}
		})
	}
	t.Run("plain TCP refused", func(t *testing.T) {
		c, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev1", Username: azureUser("dev1"), Password: good})
		if err == nil || c.Connack == nil || c.Connack.ReasonCode != 0x87 {
			t.Fatalf("Azure over plain MQTT = %+v, %v; want 0x87", c, err)
		}
	})
	t.Run("revoked key", func(t *testing.T) {
		s.Thing(t, "dev3")
		nc, err := s.Registry().CreateSymmetricKey(context.Background(), "dev3", nil)
		if err != nil {
			t.Fatal(err)
		}
		k, _ := base64.StdEncoding.DecodeString(nc.Key)
		tok := azureiot.NewSAS(k, azureHost, "dev3", now.Add(time.Hour))
		if _, err := dialAzure(t, s, "dev3", azureUser("dev3"), tok, nil); err != nil {
			t.Fatalf("before revocation: %v", err)
		}
		if _, err := s.Registry().RevokeCredential(context.Background(), "dev3", nc.ID); err != nil {
			t.Fatal(err)
		}
		c, err := dialAzure(t, s, "dev3", azureUser("dev3"), tok, nil)
		if err == nil || c.connack.ReasonCode != 0x87 {
			t.Fatalf("after revocation = %v; want 0x87", err)
		}
	})
	t.Run("refusals are counted", func(t *testing.T) {
		body := getMetrics(t, s)
		for _, reason := range []string{"sas_expired", "sas_wrong_device", "bad_credentials", "azure_client_id", "azure_bad_username", "azure_needs_tls"} {
			if want := `mote_mqtt_auth_failures_total{reason="` + reason + `"}`; !containsLine(body, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

func TestAzureCertificateAuth(t *testing.T) {
	s := daemontest.Start(t)
	s.Thing(t, "cam")
	s.Thing(t, "other")
	_, cert := s.ClientCert(t, "cam")
	if _, err := dialAzure(t, s, "cam", azureUser("cam"), "", s.TLSConfig(&cert)); err != nil {
		t.Fatalf("Azure user name with the device's certificate: %v", err)
	}
	// The certificate is cam's: it cannot speak for another device.
	c, err := dialAzure(t, s, "other", azureUser("other"), "", s.TLSConfig(&cert))
	if err == nil || c.connack.ReasonCode != 0x87 {
		t.Fatalf("cam's certificate as other = %v; want 0x87", err)
	}
}

func TestAzureSASExpiryCloses(t *testing.T) {
	s := daemontest.Start(t)
	k := azureKey(t, s, "dev1")
	exp := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second) // whole seconds, 2–3s away
	c, err := dialAzure(t, s, "dev1", azureUser("dev1"), azureiot.NewSAS(k, azureHost, "dev1", exp), nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.gone:
		if time.Now().Before(exp) {
			t.Fatalf("closed at %v, before the token expired at %v", time.Now(), exp)
		}
	case <-time.After(time.Until(exp) + 5*time.Second):
		t.Fatalf("connection still open after the SAS token expired at %v", exp)
	}
}

func TestAzureTelemetry(t *testing.T) {
	s := daemontest.Start(t)
	k := azureKey(t, s, "dev1")
	azureKey(t, s, "dev2")
	c, err := dialAzure(t, s, "dev1", azureUser("dev1"), azureiot.NewSAS(k, azureHost, "dev1", time.Now().Add(time.Hour)), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.sub(t, "things/dev1/telemetry")
	bag := azureiot.EncodePropertyBag([]azureiot.Property{{Key: "$.ct", Value: "application/json"}, {Key: "$.ce", Value: "utf-8"}, {Key: "alert level", Value: "high&dry"}})
	if rc := c.pub(t, "devices/dev1/messages/events/"+bag, 1, `{"temp":21}`); rc != 0 {
		t.Fatalf("telemetry PUBACK = %#x; want 0", rc)
	}
	m := c.wait(t, "things/dev1/telemetry")
	if string(m.Payload) != `{"temp":21}` {
		t.Errorf("payload = %s", m.Payload)
	}
	props := map[string]string{}
	if m.Properties != nil {
		for _, u := range m.Properties.User {
			props[u.Key] = u.Value
		}
		if m.Properties.ContentType != "application/json" {
			t.Errorf("content type = %q; want application/json", m.Properties.ContentType)
		}
	}
	if props["$.ct"] != "application/json" || props["$.ce"] != "utf-8" || props["alert level"] != "high&dry" {
		t.Errorf("user properties = %v", props)
	}

	t.Run("another device's topic", func(t *testing.T) {
		if rc := c.pub(t, "devices/dev2/messages/events/", 1, `{}`); rc != 0x87 {
			t.Fatalf("PUBACK = %#x; want 0x87", rc)
		}
	})
	t.Run("invalid escapes in the property bag", func(t *testing.T) {
		for _, bag := range []string{"a=%zz", "%g0=1", "=v"} {
			if rc := c.pub(t, "devices/dev1/messages/events/"+bag, 1, `{}`); rc != 0x90 {
				t.Errorf("bag %q: PUBACK = %#x; want 0x90", bag, rc)
			}
		}
	})
	t.Run("counted", func(t *testing.T) {
		body := getMetrics(t, s)
		for _, want := range []string{"mote_azure_events_total", `mote_azure_dropped_total{reason="bad_property_bag"}`, `mote_azure_dropped_total{reason="wrong_device"}`} {
			if !containsLine(body, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

// The $iothub topics carry no device id: whatever one device asks is
// answered to it alone, and nobody can publish answers to others.
func TestAzureIoTHubTopicsStayPerConnection(t *testing.T) {
	s := daemontest.Start(t)
	k1, k2 := azureKey(t, s, "dev1"), azureKey(t, s, "dev2")
	exp := time.Now().Add(time.Hour)
	d1, err := dialAzure(t, s, "dev1", azureUser("dev1"), azureiot.NewSAS(k1, azureHost, "dev1", exp), nil)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := dialAzure(t, s, "dev2", azureUser("dev2"), azureiot.NewSAS(k2, azureHost, "dev2", exp), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*azureClient{d1, d2} {
		c.sub(t, "$iothub/twin/res/#")
		c.sub(t, "$iothub/twin/PATCH/properties/desired/#")
	}
	d1.pub(t, "$iothub/twin/PATCH/properties/reported/?$rid=r1", 0, `{"secret":"dev1 only"}`)
	d1.pub(t, "$iothub/twin/GET/?$rid=g1", 0, "")
	res := d1.wait(t, "$iothub/twin/res/200/?$rid=g1")
	if !strings.Contains(string(res.Payload), "dev1 only") {
		t.Errorf("dev1's twin = %s", res.Payload)
	}
	// A device whose policies would allow anything cannot route on $iothub.
	mallory := s.Device(t, "mallory")
	m := s.V5(t, "mallory", mallory)
	if rc := m.Pub(t, "$iothub/twin/res/200/?$rid=g2", 1, false, `{"desired":{"evil":1}}`); rc < 0x80 {
		t.Errorf("publish on $iothub by a Mote device = %#x; want a refusal", rc)
	}
	// dev2 then asks: it gets its own answer, and only that.
	d2.pub(t, "$iothub/twin/GET/?$rid=g2", 0, "")
	res2 := d2.wait(t, "$iothub/twin/res/200/?$rid=g2")
	if strings.Contains(string(res2.Payload), "dev1 only") || strings.Contains(string(res2.Payload), "evil") {
		t.Errorf("dev2's twin = %s", res2.Payload)
	}
	for _, topic := range d2.topics() {
		if topic != "$iothub/twin/res/200/?$rid=g2" {
			t.Errorf("dev2 received %s", topic)
		}
	}
	for _, topic := range d1.topics() {
		if strings.Contains(topic, "g2") {
			t.Errorf("dev1 received %s", topic)
		}
	}
}

func TestAzureTwin(t *testing.T) {
	s := daemontest.Start(t)
	k := azureKey(t, s, "dev1")
	c, err := dialAzure(t, s, "dev1", azureUser("dev1"), azureiot.NewSAS(k, azureHost, "dev1", time.Now().Add(time.Hour)), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.sub(t, "$iothub/twin/res/#")
	c.sub(t, "$iothub/twin/PATCH/properties/desired/#")

	// Reported: the shadow sees it.
	c.pub(t, "$iothub/twin/PATCH/properties/reported/?$rid=1", 0, `{"fw":"1.0","temp":21}`)
	res := c.wait(t, "$iothub/twin/res/204/?$rid=1&$version=")
	if !strings.Contains(res.Topic, "$version=1") {
		t.Errorf("reported answer on %s; want $version=1", res.Topic)
	}
	body, err := s.Shadows().Get(context.Background(), "dev1", "")
	if err != nil || !strings.Contains(string(body), `"reported":{"fw":"1.0","temp":21}`) {
		t.Fatalf("shadow after the reported patch = %s, %v", body, err)
	}

	// Desired set through the platform: pushed as a patch.
	if _, err := s.Shadows().Update(context.Background(), "dev1", "", []byte(`{"state":{"desired":{"fw":"2.0"}}}`)); err != nil {
		t.Fatal(err)
	}
	p := c.wait(t, "$iothub/twin/PATCH/properties/desired/?$version=2")
	var patch map[string]any
	if err := json.Unmarshal(p.Payload, &patch); err != nil || patch["fw"] != "2.0" || patch["$version"] != 2.0 {
		t.Errorf("desired patch = %s, %v", p.Payload, err)
	}

	// GET: the whole twin.
	c.pub(t, "$iothub/twin/GET/?$rid=2", 0, "")
	g := c.wait(t, "$iothub/twin/res/200/?$rid=2")
	var twin struct {
		Desired, Reported map[string]any
	}
	if err := json.Unmarshal(g.Payload, &twin); err != nil || twin.Desired["fw"] != "2.0" || twin.Reported["fw"] != "1.0" || twin.Desired["$version"] != 2.0 {
		t.Errorf("twin = %s, %v", g.Payload, err)
	}

	// A patch that is not an object is answered 400.
	c.pub(t, "$iothub/twin/PATCH/properties/reported/?$rid=3", 0, `[1]`)
	c.wait(t, "$iothub/twin/res/400/?$rid=3")
}

// api calls the REST API as admin and decodes the JSON answer into out.
func api(t *testing.T, s *daemontest.Server, method, path, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, s.API+"/api/v1"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		_ = json.Unmarshal(b, out)
	}
	return resp.StatusCode
}

func TestAzureSymmetricKeyCredentialAPI(t *testing.T) {
	s := daemontest.Start(t)
	s.Thing(t, "dev1")
	var nc struct {
		ID, Type, Key, Secret string
	}
	if code := api(t, s, "POST", "/things/dev1/credentials", `{"type":"symmetricKey"}`, &nc); code != 201 {
		t.Fatalf("create = %d", code)
	}
	key, err := base64.StdEncoding.DecodeString(nc.Key)
	if nc.Type != "symmetricKey" || err != nil || len(key) != 32 || nc.Secret != "" {
		t.Fatalf("created %+v (%v)", nc, err)
	}
	// Shown once: not in GET, not in the list, and not in the database in
	// the clear.
	var got map[string]any
	api(t, s, "GET", "/things/dev1/credentials/"+nc.ID, "", &got)
	if _, ok := got["key"]; ok || got["type"] != "symmetricKey" {
		t.Errorf("GET = %v", got)
	}
	c, err := s.Registry().Store().Credentials().Get(context.Background(), nc.ID)
	if err != nil || !strings.HasPrefix(c.SealedKey, "mote:sealed:v1:") || strings.Contains(c.SealedKey, nc.Key) {
		t.Errorf("stored key = %q, %v; want it sealed", c.SealedKey, err)
	}
	// The key signs SAS tokens the broker accepts.
	if _, err := dialAzure(t, s, "dev1", azureUser("dev1"), azureiot.NewSAS(key, azureHost, "dev1", time.Now().Add(time.Hour)), nil); err != nil {
		t.Fatalf("connect with the new key: %v", err)
	}
	if code := api(t, s, "POST", "/things/dev1/credentials", `{"type":"symmetricKey","validityDays":3}`, nil); code != 400 {
		t.Errorf("symmetricKey with validityDays = %d; want 400", code)
	}
}

func TestAzureCloudToDevice(t *testing.T) {
	s := daemontest.Start(t)
	k := azureKey(t, s, "dev1")
	c, err := dialAzure(t, s, "dev1", azureUser("dev1"), azureiot.NewSAS(k, azureHost, "dev1", time.Now().Add(time.Hour)), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Nobody listens yet: a raw C2D message is refused, not queued.
	if code := api(t, s, "POST", "/things/dev1/c2d", `{"body":"x"}`, nil); code != 409 {
		t.Errorf("c2d before the subscription = %d; want 409", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/dev1/messages/devicebound/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	// A Mote command arrives as a C2D message; the PUBACK completes it.
	var cmd struct{ ID, Status, Detail string }
	if code := api(t, s, "POST", "/things/dev1/commands", `{"name":"reboot","payload":{"delaySeconds":5},"ttlSeconds":600}`, &cmd); code != 201 {
		t.Fatalf("create command = %d %s", code, cmd.Detail)
	}
	m := c.wait(t, "devices/dev1/messages/devicebound/")
	bag := strings.TrimPrefix(m.Topic, "devices/dev1/messages/devicebound/")
	props, err := azureiot.ParsePropertyBag(bag)
	if err != nil {
		t.Fatal(err)
	}
	pm := map[string]string{}
	for _, p := range props {
		pm[p.Key] = p.Value
	}
	if pm["$.mid"] != cmd.ID || pm["$.to"] != "/devices/dev1/messages/devicebound" || pm["$.ct"] != "application/json" {
		t.Errorf("C2D properties = %v; want $.mid %s", pm, cmd.ID)
	}
	if !strings.Contains(string(m.Payload), "reboot") {
		t.Errorf("C2D body = %s", m.Payload)
	}
	daemontest.WaitFor(t, 5*time.Second, func() error {
		var got struct{ Status string }
		api(t, s, "GET", "/things/dev1/commands/"+cmd.ID, "", &got)
		if got.Status != "delivered" {
			return errorf("command status = %q; want delivered", got.Status)
		}
		return nil
	})

	// A raw C2D message with application properties.
	var res struct{ MessageID string }
	if code := api(t, s, "POST", "/things/dev1/c2d", `{"body":"hello","properties":{"color":"red & blue"},"contentType":"text/plain"}`, &res); code != 202 || res.MessageID == "" {
		t.Fatalf("c2d = %d %+v", code, res)
	}
	m = c.wait(t, "devices/dev1/messages/devicebound/color=")
	props, err = azureiot.ParsePropertyBag(strings.TrimPrefix(m.Topic, "devices/dev1/messages/devicebound/"))
	if err != nil || string(m.Payload) != "hello" {
		t.Fatalf("raw C2D %s: %s, %v", m.Topic, m.Payload, err)
	}
	want := []azureiot.Property{{Key: "color", Value: "red & blue"}, {Key: "$.mid", Value: res.MessageID},
		{Key: "$.to", Value: "/devices/dev1/messages/devicebound"}, {Key: "$.ct", Value: "text/plain"}}
	if !reflect.DeepEqual(props, want) {
		t.Errorf("raw C2D properties = %v; want %v", props, want)
	}
	for _, bad := range []string{`{"body":"x","properties":{"$.mid":"forged"}}`, `{"properties":{}}`, `{"body":"x","extra":1}`} {
		if code := api(t, s, "POST", "/things/dev1/c2d", bad, nil); code != 400 {
			t.Errorf("c2d %s = %d; want 400", bad, code)
		}
	}
	if code := api(t, s, "POST", "/things/nobody/c2d", `{"body":"x"}`, nil); code != 404 {
		t.Errorf("c2d to an unknown thing = %d; want 404", code)
	}
}

func TestAzureDirectMethod(t *testing.T) {
	s := daemontest.Start(t)
	k := azureKey(t, s, "dev1")
	c, err := dialAzure(t, s, "dev1", azureUser("dev1"), azureiot.NewSAS(k, azureHost, "dev1", time.Now().Add(time.Hour)), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.sub(t, "$iothub/methods/POST/#")
	// The device answers every call with 201 and the payload it got.
	c.AddOnPublishReceived(func(pr paho.PublishReceived) (bool, error) {
		p := pr.Packet
		if rest, ok := strings.CutPrefix(p.Topic, "$iothub/methods/POST/reboot/?$rid="); ok {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, _ = c.Publish(ctx, &paho.Publish{Topic: "$iothub/methods/res/201/?$rid=" + rest, Payload: []byte(`{"echo":` + string(p.Payload) + `}`)})
			}()
		}
		return false, nil
	})
	var res struct {
		Status  int
		Payload map[string]any
	}
	if code := api(t, s, "POST", "/things/dev1/methods/reboot", `{"payload":{"delay":5},"timeoutSeconds":5}`, &res); code != 200 {
		t.Fatalf("method call = %d", code)
	}
	if res.Status != 201 || res.Payload["echo"] == nil {
		t.Errorf("method result = %+v; want status 201 with the echo", res)
	}
	// A call to a device that does not answer that method times out.
	if code := api(t, s, "POST", "/things/dev1/methods/other", `{"timeoutSeconds":1}`, nil); code != 504 {
		t.Errorf("unanswered method = %d; want 504", code)
	}
}

// stuckTwins is a twin store that does not answer (a dead database)
// until release is closed, then fails with its deadline exceeded.
type stuckTwins struct {
	calls   atomic.Int64
	release chan struct{}
}

func (s *stuckTwins) wait(ctx context.Context) error {
	s.calls.Add(1)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.release:
		return context.DeadlineExceeded
	}
}

func (s *stuckTwins) GetTwin(ctx context.Context, _ string) ([]byte, error) {
	return nil, s.wait(ctx)
}

func (s *stuckTwins) ReportTwin(ctx context.Context, _ string, _ []byte) (int64, error) {
	return 0, s.wait(ctx)
}

func (s *stuckTwins) DesiredPatch([]byte) ([]byte, int64, bool) { return nil, 0, false }

// A flood of twin requests against a store that does not answer: the
// connection's queue is bounded (the rest are answered 429 at once), the
// ones taken are answered 504 at the deadline, and the device's other
// traffic goes on meanwhile (nothing waits on the publish path).
func TestAzureTwinFloodAndDeadStore(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) {
		c.AzureQueueSize = 2
		c.AzureRequestTimeout = time.Minute
	})
	stuck := &stuckTwins{release: make(chan struct{})}
	s.Broker().SetAzureTwin(stuck)
	k := azureKey(t, s, "dev1")
	c, err := dialAzure(t, s, "dev1", azureUser("dev1"), azureiot.NewSAS(k, azureHost, "dev1", time.Now().Add(time.Hour)), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.sub(t, "$iothub/twin/res/#")
	c.sub(t, "things/dev1/telemetry")
	const n = 10
	for i := range n {
		c.pub(t, fmt.Sprintf("$iothub/twin/GET/?$rid=f%d", i), 0, "")
	}
	// Telemetry is not held up by the stuck twin requests: it arrives
	// while the store is still stuck (nothing was answered but 429s).
	if rc := c.pub(t, "devices/dev1/messages/events/", 1, "still flowing"); rc != 0 {
		t.Fatalf("telemetry PUBACK = %#x", rc)
	}
	c.wait(t, "things/dev1/telemetry")
	for _, topic := range c.topics() {
		if strings.HasPrefix(topic, "$iothub/twin/res/") && !strings.HasPrefix(topic, "$iothub/twin/res/429/") {
			t.Fatalf("%s answered while the store is stuck", topic)
		}
	}
	close(stuck.release)
	daemontest.WaitFor(t, 10*time.Second, func() error {
		var busy, timedOut int
		for _, topic := range c.topics() {
			switch {
			case strings.HasPrefix(topic, "$iothub/twin/res/429/"):
				busy++
			case strings.HasPrefix(topic, "$iothub/twin/res/504/"):
				timedOut++
			}
		}
		// One in the worker and two queued (504 each, one after the
		// other), or two queued if the worker had not taken the first yet.
		if busy+timedOut != n || busy < n-3 || busy > n-2 {
			return errorf("%d answered 429 and %d 504; want %d or %d 429 and the rest 504", busy, timedOut, n-3, n-2)
		}
		return nil
	})
	if got := stuck.calls.Load(); got < 2 || got > 3 {
		t.Errorf("the twin store was called %d times; want 2 or 3 (the rest refused before it)", got)
	}
	if body := getMetrics(t, s); !containsLine(body, `mote_azure_dropped_total{reason="queue_full"}`) || !containsLine(body, `mote_azure_requests_total{kind="twin-get",status="504"}`) {
		t.Errorf("metrics lack queue_full drops or 504 answers")
	}
}

// The SDKs connect with clean session false: after a reconnect that
// resumes the session, without subscribing again, desired patches still
// reach the device.
func TestAzureDesiredAfterSessionResume(t *testing.T) {
	s := daemontest.Start(t)
	k := azureKey(t, s, "dev1")
	tok := azureiot.NewSAS(k, azureHost, "dev1", time.Now().Add(time.Hour))
	clean := false
	o := daemontest.V3Options{ClientID: "dev1", Username: azureUser("dev1"), Password: tok, TLS: s.TLSConfig(nil), Clean: &clean}
	c, code, err := s.DialV3(t, o)
	if err != nil {
		t.Fatalf("connect = %d, %v", code, err)
	}
	if rc := c.Sub(t, "$iothub/twin/PATCH/properties/desired/#", 0); rc >= 0x80 {
		t.Fatalf("subscribe = %#x", rc)
	}
	c.Disconnect(100)
	daemontest.WaitFor(t, 5*time.Second, func() error {
		if s.Broker().Connected("dev1") {
			return errorf("dev1 still connected")
		}
		return nil
	})
	c2, code, err := s.DialV3(t, o)
	if err != nil {
		t.Fatalf("reconnect = %d, %v", code, err)
	}
	if _, err := s.Shadows().Update(context.Background(), "dev1", "", []byte(`{"state":{"desired":{"led":"on"}}}`)); err != nil {
		t.Fatal(err)
	}
	m := c2.Inbox.Wait(t, "$iothub/twin/PATCH/properties/desired/?$version=1", 5*time.Second)
	if !strings.Contains(m.Payload, `"led":"on"`) {
		t.Errorf("desired patch = %s", m.Payload)
	}
}
