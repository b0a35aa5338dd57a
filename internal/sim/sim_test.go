package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/policy"
	"github.com/moteiot/mote/internal/sim"
)

const wait = 10 * time.Second

// running is a fleet started against a test server.
type running struct {
	fleet *sim.Fleet
	stop  func()
}

func startFleet(t *testing.T, s *daemontest.Server, ids []sim.Identity, rate float64) *running {
	t.Helper()
	f, err := sim.NewFleet(ids, sim.Options{MQTTAddr: s.MQTT, Rate: rate, QoS: 1, RebootDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	r := &running{fleet: f}
	stopped := false
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v; want nil", err)
			}
		case <-time.After(wait):
			t.Errorf("Run did not return within %v of the stop", wait)
		}
	}
	t.Cleanup(r.stop)
	daemontest.WaitFor(t, wait, func() error {
		if st := f.Stats(); st.Connected != len(ids) {
			return fmt.Errorf("connected %d/%d; stats %+v", st.Connected, len(ids), st)
		}
		return nil
	})
	return r
}

// reported returns the reported state of a thing's classic shadow.
func reported(ctx context.Context, c *apiclient.Client, thing string) (map[string]any, map[string]any, error) {
	raw, err := c.GetShadow(ctx, thing, "")
	if err != nil {
		return nil, nil, err
	}
	var doc struct {
		State struct {
			Reported map[string]any `json:"reported"`
			Delta    map[string]any `json:"delta"`
		} `json:"state"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, nil, err
	}
	return doc.State.Reported, doc.State.Delta, nil
}

func TestSimulatorEndToEnd(t *testing.T) {
	s := daemontest.Start(t)
	ctx := context.Background()
	c := apiclient.New(s.API, s.Token)

	ids, rep, err := sim.Provision(ctx, c, sim.ProvisionOptions{Devices: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Created != 3 || rep.Reused != 0 || len(ids) != 3 {
		t.Fatalf("first Provision: %+v, %d ids; want 3 created", rep, len(ids))
	}
	for i, id := range ids {
		want := fmt.Sprintf("sim-%04d", i+1)
		if id.Thing != want || id.Secret == "" {
			t.Fatalf("identity %d = %+v; want thing %s with a secret", i, id, want)
		}
		th, err := c.GetThing(ctx, want)
		if err != nil {
			t.Fatal(err)
		}
		if th.Type != sim.DefaultType || !slices.Contains(th.Groups, sim.DefaultGroup) ||
			th.Attributes["model"] == "" || th.Attributes["firmware"] == "" || th.Attributes["site"] != id.Site.Code {
			t.Fatalf("thing %s = %+v; want type %s, group %s, attributes model, firmware, site", want, th, sim.DefaultType, sim.DefaultGroup)
		}
	}

	r := startFleet(t, s, ids, 20)

	// Telemetry lands in the telemetry store.
	keys := []string{"temperature", "humidity", "battery", "lat", "lon"}
	daemontest.WaitFor(t, wait, func() error {
		pts, err := c.TelemetryLatest(ctx, "sim-0002", keys)
		if err != nil {
			return err
		}
		if len(pts) != len(keys) {
			return fmt.Errorf("latest telemetry of sim-0002: %+v; want %v", pts, keys)
		}
		return nil
	})
	pts, _, err := c.Telemetry(ctx, "sim-0002", apiclient.TelemetryQuery{Keys: []string{"battery"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].Value.Float() > pts[i-1].Value.Float() {
			t.Fatalf("stored battery rose from %v to %v", pts[i-1], pts[i])
		}
	}

	// The reported shadow exists.
	daemontest.WaitFor(t, wait, func() error {
		rp, _, err := reported(ctx, c, "sim-0001")
		if err != nil {
			return err
		}
		if rp["model"] == nil || rp["firmware"] != sim.DefaultFirmware || rp["locked"] != false || rp["mode"] != "running" {
			return fmt.Errorf("reported = %v", rp)
		}
		return nil
	})

	// A desired change reaches the device as a delta and comes back as
	// reported: the delta is then empty.
	if _, err := c.UpdateShadow(ctx, "sim-0001", "", json.RawMessage(`{"state":{"desired":{"rate":5,"locked":true,"color":"red"}}}`)); err != nil {
		t.Fatal(err)
	}
	daemontest.WaitFor(t, wait, func() error {
		rp, delta, err := reported(ctx, c, "sim-0001")
		if err != nil {
			return err
		}
		if rp["rate"] != 5.0 || rp["locked"] != true || rp["color"] != "red" || delta != nil {
			return fmt.Errorf("reported = %v, delta = %v", rp, delta)
		}
		return nil
	})
	// An invalid desired value is refused by the type's device model
	// (400 naming the path) ...
	if _, err := c.UpdateShadow(ctx, "sim-0001", "", json.RawMessage(`{"state":{"desired":{"rate":"fast"}}}`)); err == nil || !strings.Contains(err.Error(), "/rate") {
		t.Fatalf("desired rate \"fast\" = %v; want refused naming /rate", err)
	}
	// ... and, where a model does not catch it (here: a type without
	// one), by the device, which says so in the shadow.
	if _, err := c.UpdateType(ctx, sim.DefaultType, apiclient.TypePatch{RemoveModel: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateShadow(ctx, "sim-0001", "", json.RawMessage(`{"state":{"desired":{"rate":"fast"}}}`)); err != nil {
		t.Fatal(err)
	}
	daemontest.WaitFor(t, wait, func() error {
		rp, delta, err := reported(ctx, c, "sim-0001")
		if err != nil {
			return err
		}
		if msg, _ := rp["configError"].(string); !strings.Contains(msg, "rate must be a number") || delta["rate"] != "fast" {
			return fmt.Errorf("reported = %v, delta = %v", rp, delta)
		}
		return nil
	})

	// Disabling a device kicks it out: the fleet counts the error, says
	// why, keeps retrying, and the device is back once enabled again.
	if _, err := c.UpdateThing(ctx, "sim-0003", apiclient.ThingPatch{Enabled: new(false)}); err != nil {
		t.Fatal(err)
	}
	daemontest.WaitFor(t, wait, func() error {
		st := r.fleet.Stats()
		if st.Connected != 2 || st.Errors == 0 || !strings.Contains(st.LastError, "sim-0003") ||
			!(strings.Contains(st.LastError, "not authorized (0x87)") || strings.Contains(st.LastError, "banned (0x8A)")) {
			return fmt.Errorf("stats after disabling sim-0003: %+v", st)
		}
		return nil
	})
	if _, err := c.UpdateThing(ctx, "sim-0003", apiclient.ThingPatch{Enabled: new(true)}); err != nil {
		t.Fatal(err)
	}
	daemontest.WaitFor(t, wait, func() error {
		if st := r.fleet.Stats(); st.Connected != 3 || st.Reconnects != 1 {
			return fmt.Errorf("stats after enabling sim-0003 again: %+v", st)
		}
		return nil
	})

	// Stop: every device disconnects cleanly.
	before := r.fleet.Stats()
	r.stop()
	st := r.fleet.Stats()
	if st.Connected != 0 || st.Sent < before.Sent || st.Sent == 0 || st.Deltas < 2 {
		t.Fatalf("stats after stop = %+v", st)
	}
	daemontest.WaitFor(t, wait, func() error {
		things, _, err := c.ListThings(ctx, apiclient.ThingQuery{Prefix: "sim-", Connected: new(true)})
		if err != nil {
			return err
		}
		if len(things) != 0 {
			return fmt.Errorf("still connected after stop: %v", things)
		}
		return nil
	})

	// A second run reuses the things and replaces their credentials.
	ids2, rep, err := sim.Provision(ctx, c, sim.ProvisionOptions{Devices: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Created != 0 || rep.Reused != 3 || rep.CredentialsDeleted != 3 {
		t.Fatalf("second Provision: %+v; want 3 reused, 3 old credentials deleted", rep)
	}
	for i, id := range ids2 {
		creds, err := c.ListCredentials(ctx, id.Thing)
		if err != nil {
			t.Fatal(err)
		}
		if len(creds) != 1 || creds[0].ID != id.CredentialID || id.CredentialID == ids[i].CredentialID {
			t.Fatalf("credentials of %s after the second run: %+v; want only %s", id.Thing, creds, id.CredentialID)
		}
	}
	startFleet(t, s, ids2[:1], 1)
}

// operator connects an MQTT client that may play the platform's side of
// commands and methods for the sim- things.
func operator(t *testing.T, s *daemontest.Server) *daemontest.V5 {
	t.Helper()
	_, err := s.Registry().CreatePolicy(context.Background(), "platform", "", policy.Document{Statements: []policy.Statement{
		{Effect: policy.Allow, Actions: []policy.Action{policy.Publish, policy.Subscribe}, Topics: []string{"$mote/things/#"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	op := s.V5(t, "operator", s.Device(t, "operator", "platform"))
	for _, f := range []string{"$mote/things/+/commands/+/result", "$mote/things/+/methods/res/#"} {
		if rc := op.Sub(t, f); rc != 1 {
			t.Fatalf("subscribe %s = %#x", f, rc)
		}
	}
	return op
}

type result struct {
	Status string         `json:"status"`
	Output map[string]any `json:"output"`
}

func waitResult(t *testing.T, op *daemontest.V5, thing, id string) result {
	t.Helper()
	m := op.Inbox.Wait(t, "$mote/things/"+thing+"/commands/"+id+"/result", wait)
	var r result
	if err := json.Unmarshal([]byte(m.Payload), &r); err != nil {
		t.Fatalf("result %s: %v", m.Payload, err)
	}
	return r
}

// sendCommand publishes a command as the commands service does.
func sendCommand(t *testing.T, op *daemontest.V5, thing, id, name, payload string) {
	t.Helper()
	body := fmt.Sprintf(`{"id":%q,"name":%q,"expiresAt":%q`, id, name, time.Now().Add(time.Minute).UTC().Format(time.RFC3339))
	if payload != "" {
		body += `,"payload":` + payload
	}
	op.Pub(t, "$mote/things/"+thing+"/commands/"+id, 1, false, body+"}")
}

// The device side of the issue 5 contract, with a test client in the
// platform's place.
func TestSimulatorCommandsAndMethods(t *testing.T) {
	s := daemontest.Start(t)
	ctx := context.Background()
	c := apiclient.New(s.API, s.Token)
	ids, _, err := sim.Provision(ctx, c, sim.ProvisionOptions{Devices: 2, Prefix: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	r := startFleet(t, s, ids, 5)
	op := operator(t, s)

	sendCommand(t, op, "dev-0001", "c1", "locate", "")
	if res := waitResult(t, op, "dev-0001", "c1"); res.Status != "succeeded" || res.Output["lat"] == nil || res.Output["lon"] == nil || res.Output["accuracy"] == nil {
		t.Fatalf("locate = %+v; want succeeded with lat, lon, accuracy", res)
	}
	sendCommand(t, op, "dev-0001", "c2", "selfdestruct", "")
	if res := waitResult(t, op, "dev-0001", "c2"); res.Status != "rejected" || !strings.Contains(fmt.Sprint(res.Output["error"]), `unknown command "selfdestruct"`) {
		t.Fatalf("unknown command = %+v; want rejected", res)
	}
	sendCommand(t, op, "dev-0001", "c3", "configure", `{"settings":{"rate":2}}`)
	if res := waitResult(t, op, "dev-0001", "c3"); res.Status != "succeeded" {
		t.Fatalf("configure = %+v; want succeeded", res)
	}
	sendCommand(t, op, "dev-0001", "c4", "configure", `{"settings":{"colour":"red"}}`)
	if res := waitResult(t, op, "dev-0001", "c4"); res.Status != "failed" || !strings.Contains(fmt.Sprint(res.Output["error"]), `unknown setting "colour"`) {
		t.Fatalf("configure with an unknown setting = %+v; want failed", res)
	}
	sendCommand(t, op, "dev-0001", "c5", "lock", "")
	if res := waitResult(t, op, "dev-0001", "c5"); res.Status != "succeeded" || res.Output["locked"] != true {
		t.Fatalf("lock = %+v", res)
	}
	daemontest.WaitFor(t, wait, func() error {
		rp, _, err := reported(ctx, c, "dev-0001")
		if err != nil {
			return err
		}
		if rp["locked"] != true || rp["rate"] != 2.0 {
			return fmt.Errorf("reported = %v; want locked, rate 2", rp)
		}
		return nil
	})

	// Direct methods.
	op.Pub(t, "$mote/things/dev-0002/methods/ping/r1", 1, false, `{}`)
	if m := op.Inbox.Wait(t, "$mote/things/dev-0002/methods/res/200/r1", wait); !strings.Contains(m.Payload, `"pong":true`) {
		t.Fatalf("ping answered %s", m.Payload)
	}
	op.Pub(t, "$mote/things/dev-0002/methods/locate/r2", 1, false, `{}`)
	m := op.Inbox.Wait(t, "$mote/things/dev-0002/methods/res/200/r2", wait)
	var pos map[string]float64
	if err := json.Unmarshal([]byte(m.Payload), &pos); err != nil || pos["lat"] == 0 || pos["lon"] == 0 {
		t.Fatalf("locate answered %s (%v)", m.Payload, err)
	}
	op.Pub(t, "$mote/things/dev-0002/methods/fly/r3", 1, false, `{}`)
	if m := op.Inbox.Wait(t, "$mote/things/dev-0002/methods/res/404/r3", wait); !strings.Contains(m.Payload, `unknown method \"fly\"`) {
		t.Fatalf("unknown method answered %s", m.Payload)
	}

	// Reboot: the device goes away, comes back, and then reports success.
	sendCommand(t, op, "dev-0002", "c6", "reboot", "")
	res := waitResult(t, op, "dev-0002", "c6")
	if res.Status != "succeeded" || res.Output["bootCount"] != 1.0 {
		t.Fatalf("reboot = %+v; want succeeded, bootCount 1", res)
	}
	if st := r.fleet.Stats(); st.Reconnects != 1 {
		t.Fatalf("reconnects after a reboot = %d; want 1 (%+v)", st.Reconnects, st)
	}
	daemontest.WaitFor(t, wait, func() error {
		rp, _, err := reported(ctx, c, "dev-0002")
		if err != nil {
			return err
		}
		if rp["bootCount"] != 1.0 || rp["mode"] != "running" {
			return fmt.Errorf("reported = %v; want bootCount 1, mode running", rp)
		}
		return nil
	})
	// A command delivered again is answered again, not run again.
	sendCommand(t, op, "dev-0002", "c6", "reboot", "")
	daemontest.WaitFor(t, wait, func() error {
		var got []string
		for _, m := range op.Inbox.All() {
			if m.Topic == "$mote/things/dev-0002/commands/c6/result" {
				got = append(got, m.Payload)
			}
		}
		if len(got) < 2 {
			return fmt.Errorf("results of c6: %q; want a second one", got)
		}
		if got[1] != got[0] {
			return fmt.Errorf("second result %s differs from the first %s", got[1], got[0])
		}
		return nil
	})
	if st := r.fleet.Stats(); st.Reconnects != 1 || st.Errors != 0 {
		t.Fatalf("after a redelivered reboot: %+v; want still 1 reconnect, no errors", st)
	}
}

func TestProvisionRefusesForeignThings(t *testing.T) {
	s := daemontest.Start(t)
	ctx := context.Background()
	c := apiclient.New(s.API, s.Token)
	s.Thing(t, "sim-0002")
	_, _, err := sim.Provision(ctx, c, sim.ProvisionOptions{Devices: 3})
	if apiclient.KindOf(err) != core.KindConflict || !strings.Contains(err.Error(), `thing "sim-0002" exists but is not a simulated device`) {
		t.Fatalf("Provision over a foreign thing = %v; want a conflict naming it", err)
	}
	creds, err := c.ListCredentials(ctx, "sim-0002")
	if err != nil || len(creds) != 0 {
		t.Fatalf("the foreign thing's credentials: %v, %v; want none touched", creds, err)
	}

	_, _, err = sim.Provision(ctx, c, sim.ProvisionOptions{Devices: 1, Prefix: "bad/prefix"})
	if core.FieldOf(err) != "prefix" {
		t.Fatalf("bad prefix: %v; want an invalid prefix", err)
	}
	_, _, err = sim.Provision(ctx, apiclient.New(s.API, "mote.tok_nope.nope"), sim.ProvisionOptions{Devices: 1})
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("bad token: %v; want 401", err)
	}
	if _, err := sim.NewFleet(nil, sim.Options{MQTTAddr: s.MQTT, Rate: 1000}); core.FieldOf(err) != "rate" {
		t.Fatalf("rate 1000: %v; want invalid rate", err)
	}
}

// BenchmarkFleet connects a fleet to a server in the same process and has
// it publish b.N telemetry messages at QoS 1: connects/s and msgs/s.
func BenchmarkFleet(b *testing.B) {
	const devices = 200
	// No per-device rate limit: the simulator publishes as fast as it may.
	s := daemontest.Start(b, func(c *config.Config) { c.DeviceRateLimit = 0 })
	ctx := context.Background()
	ids, _, err := sim.Provision(ctx, apiclient.New(s.API, s.Token), sim.ProvisionOptions{Devices: devices, Prefix: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	f, err := sim.NewFleet(ids, sim.Options{MQTTAddr: s.MQTT, Rate: sim.MaxRate, QoS: 1})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { done <- f.Run(runCtx) }()
	pollUntil(b, time.Minute, func() error {
		if n := f.Stats().Connected; n < devices {
			return fmt.Errorf("%d of %d devices connected", n, devices)
		}
		return nil
	})
	connected := time.Since(start)
	sent0, t0 := f.Stats().Sent, time.Now()
	pollUntil(b, 10*time.Minute, func() error {
		if n := f.Stats().Sent - sent0; n < int64(b.N) {
			return fmt.Errorf("%d of %d messages sent", n, b.N)
		}
		return nil
	})
	elapsed := time.Since(t0)
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(devices/connected.Seconds(), "connects/s")
	b.ReportMetric(float64(f.Stats().Sent-sent0)/elapsed.Seconds(), "msgs/s")
}

// pollUntil checks cond every millisecond (fine enough to time the fleet,
// unlike daemontest.WaitFor's 10ms) and fails after timeout.
func pollUntil(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			tb.Fatalf("after %v: %v", timeout, err)
		}
	}
}

// api sends one REST request and decodes the JSON answer into out.
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
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %s: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

type apiCommand struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Result *struct {
		Status string         `json:"status"`
		Output map[string]any `json:"output"`
	} `json:"result"`
}

// command queues a command through the REST API and waits until the
// device has reported its outcome.
func command(t *testing.T, s *daemontest.Server, thing, body string) apiCommand {
	t.Helper()
	var cmd apiCommand
	if code := api(t, s, "POST", "/things/"+thing+"/commands", body, &cmd); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("POST command %s = %d", body, code)
	}
	daemontest.WaitFor(t, wait, func() error {
		var got apiCommand
		if code := api(t, s, "GET", "/things/"+thing+"/commands/"+cmd.ID, "", &got); code != http.StatusOK {
			return fmt.Errorf("GET command = %d", code)
		}
		if got.Result == nil {
			return fmt.Errorf("command %s is %s", cmd.ID, got.Status)
		}
		cmd = got
		return nil
	})
	return cmd
}

// The simulator against the platform's own commands and methods services.
func TestSimulatorWithPlatform(t *testing.T) {
	s := daemontest.Start(t)
	// Direct methods are always part of the server (daemon.New): the part
	// of this test that uses them must run, not be skipped.
	if s.Methods() == nil {
		t.Fatal("the server has no direct methods service")
	}
	ctx := context.Background()
	c := apiclient.New(s.API, s.Token)
	ids, _, err := sim.Provision(ctx, c, sim.ProvisionOptions{Devices: 2})
	if err != nil {
		t.Fatal(err)
	}
	r := startFleet(t, s, ids, 5)

	cmd := command(t, s, "sim-0001", `{"name":"locate","ttlSeconds":60}`)
	if cmd.Status != "succeeded" || cmd.Result.Output["lat"] == nil || cmd.Result.Output["accuracy"] == nil {
		t.Fatalf("locate = %+v %+v; want succeeded with a position", cmd, cmd.Result)
	}
	cmd = command(t, s, "sim-0001", `{"name":"lock","payload":{"message":"stolen","pin":"1234"}}`)
	if cmd.Status != "succeeded" {
		t.Fatalf("lock = %+v %+v", cmd, cmd.Result)
	}
	cmd = command(t, s, "sim-0001", `{"name":"unlock","payload":{"pin":"0000"}}`)
	if cmd.Status != "failed" || cmd.Result.Output["error"] != "wrong PIN" {
		t.Fatalf("unlock with a wrong PIN = %+v %+v; want failed", cmd, cmd.Result)
	}
	cmd = command(t, s, "sim-0001", `{"name":"configure","payload":{"settings":{"rate":3}}}`)
	if cmd.Status != "succeeded" {
		t.Fatalf("configure = %+v %+v", cmd, cmd.Result)
	}
	// The type's model lists the commands: an unknown one is refused by
	// the API; without the model the device itself rejects it.
	if code := api(t, s, "POST", "/things/sim-0001/commands", `{"name":"dance"}`, nil); code != http.StatusBadRequest {
		t.Fatalf("unknown command = %d; want 400 from the model", code)
	}
	if _, err := apiclient.New(s.API, s.Token).UpdateType(ctx, sim.DefaultType, apiclient.TypePatch{RemoveModel: true}); err != nil {
		t.Fatal(err)
	}
	cmd = command(t, s, "sim-0001", `{"name":"dance"}`)
	if cmd.Status != "rejected" {
		t.Fatalf("unknown command = %+v %+v; want rejected", cmd, cmd.Result)
	}
	daemontest.WaitFor(t, wait, func() error {
		rp, _, err := reported(ctx, c, "sim-0001")
		if err != nil {
			return err
		}
		if rp["locked"] != true || rp["lockMessage"] != "stolen" || rp["rate"] != 3.0 {
			return fmt.Errorf("reported = %v; want locked with the message, rate 3", rp)
		}
		return nil
	})

	// Reboot: the device disconnects, reconnects, then reports success.
	cmd = command(t, s, "sim-0002", `{"name":"reboot"}`)
	if cmd.Status != "succeeded" || cmd.Result.Output["bootCount"] != 1.0 {
		t.Fatalf("reboot = %+v %+v; want succeeded, bootCount 1", cmd, cmd.Result)
	}
	if st := r.fleet.Stats(); st.Reconnects != 1 {
		t.Fatalf("reconnects after a reboot = %d; want 1", st.Reconnects)
	}

	// Direct methods, through the REST API.
	res, err := c.InvokeMethod(ctx, "sim-0002", "locate", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var pos map[string]float64
	if err := json.Unmarshal(res.Payload, &pos); err != nil || res.Status != 200 || pos["lat"] == 0 || pos["lon"] == 0 {
		t.Fatalf("locate method = %d %s (%v); want 200 with a position", res.Status, res.Payload, err)
	}
	res, err = c.InvokeMethod(ctx, "sim-0002", "getTelemetry", nil, 5*time.Second)
	if err != nil || res.Status != 200 || !strings.Contains(string(res.Payload), `"temperature"`) {
		t.Fatalf("getTelemetry = %+v, %v", res, err)
	}
	res, err = c.InvokeMethod(ctx, "sim-0002", "selfTest", nil, 5*time.Second)
	if err != nil || res.Status != 404 {
		t.Fatalf("unknown method = %+v, %v; want status 404", res, err)
	}
	if st := r.fleet.Stats(); st.Errors != 0 {
		t.Fatalf("errors: %+v", st)
	}
}
