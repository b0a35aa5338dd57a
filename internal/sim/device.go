package sim

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/core"
)

// Topic suffixes under $mote/things/{thing}/.
const (
	commandsSuffix = "commands/"
	methodsSuffix  = "methods/"
	deltaSuffix    = "shadow/update/delta"
	rejectedSuffix = "shadow/update/rejected"
)

// inbound is a message from the platform, handed from paho's receive
// goroutine to the device's loop.
type inbound struct {
	kind    int // one of the in* constants
	id      string
	method  string
	payload []byte
}

const (
	inCommand = iota
	inMethod
	inDelta
)

// inboxSize bounds the messages waiting for a device's loop; beyond it
// they are dropped and counted as errors.
const inboxSize = 64

// receiveMaximum is the QoS 1 messages the broker may have in flight to a
// device.
const receiveMaximum = 32

// recentCommands is how many command results a device remembers, to
// answer a redelivered command without executing it twice.
const recentCommands = 32

// device is one simulated device. Everything but inbox belongs to the
// goroutine running run.
type device struct {
	f     *Fleet
	id    Identity
	model *Model
	rng   *rand.Rand
	inbox chan inbound

	rate     float64
	locked   bool
	firmware string
	extra    map[string]any // desired keys the device does not know, echoed as reported
	boots    int
	bootedAt time.Time

	battery     int           // whole % last reported in the shadow
	last        Reading       // the last telemetry reading
	reboot      *command      // a reboot to carry out or to report once back online
	rebootDelay time.Duration // delaySeconds of the reboot being executed
	rebootTimer *time.Timer   // a delayed reboot: fires when it is due
	lockMessage string
	pin         string
	downSince   time.Time // when the reboot went offline
	results     map[string]commandResult
	resultList  []string // ids in results, oldest first
	connects    int
	index       int // in the fleet; the scenario drives device 0
	readings    int // telemetry readings taken
}

func newDevice(f *Fleet, id Identity, index int) *device {
	now := time.Now()
	seed := seedOf(id.Thing)
	return &device{
		f:        f,
		id:       id,
		model:    NewModel(id.Thing, id.Site, now),
		rng:      rand.New(rand.NewPCG(seed, uint64(index))),
		inbox:    make(chan inbound, inboxSize),
		rate:     f.opts.Rate,
		firmware: id.Firmware,
		extra:    map[string]any{},
		bootedAt: now,
		battery:  -1,
		results:  map[string]commandResult{},
		index:    index,
	}
}

func (d *device) topic(suffix string) string { return core.PlatformThingTopic(d.id.Thing, suffix) }

// run connects, runs sessions and reconnects (with a jittered backoff
// after failures) until ctx is done.
func (d *device) run(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		c, kicked, err := d.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.f.fail(d.id.Thing, "connect", err)
			if !sleep(ctx, backoff/2+time.Duration(d.rng.Int64N(int64(backoff)))) {
				return
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = time.Second
		err = d.session(ctx, c, kicked)
		switch {
		case ctx.Err() != nil:
			return
		case err == errReboot:
			if !sleep(ctx, d.f.opts.RebootDelay) {
				return
			}
		case err != nil:
			d.f.fail(d.id.Thing, "session", err)
			if !sleep(ctx, time.Duration(d.rng.Int64N(int64(time.Second)))) {
				return
			}
		}
	}
}

// connect dials and sends CONNECT with the device's secret (MQTT 5, clean
// start, client id = thing name), at most Options.Parallel at a time.
//
// The channel it returns gets the server's DISCONNECT, if one comes.
func (d *device) connect(ctx context.Context) (*paho.Client, <-chan error, error) {
	if !d.f.acquire(ctx) {
		return nil, nil, ctx.Err()
	}
	defer d.f.release()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	dialer := &net.Dialer{}
	var (
		conn net.Conn
		err  error
	)
	if d.f.opts.TLS != nil {
		td := &tls.Dialer{NetDialer: dialer, Config: d.f.opts.TLS}
		conn, err = td.DialContext(cctx, "tcp", d.f.opts.MQTTAddr)
	} else {
		conn, err = dialer.DialContext(cctx, "tcp", d.f.opts.MQTTAddr)
	}
	if err != nil {
		return nil, nil, err
	}
	kicked := make(chan error, 1)
	c := paho.NewClient(paho.ClientConfig{
		Conn:              packets.NewThreadSafeConn(conn), // paho writes a packet in parts; its pinger writes from another goroutine
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){d.receive},
		OnClientError:     func(error) {},
		OnServerDisconnect: func(dc *paho.Disconnect) {
			kicked <- fmt.Errorf("the server disconnected it: %w", reasonError(dc.ReasonCode, disconnectReason(dc)))
		},
	})
	ca, err := c.Connect(cctx, &paho.Connect{
		ClientID:     d.id.Thing,
		KeepAlive:    uint16(d.f.opts.KeepAlive / time.Second),
		CleanStart:   true,
		Username:     d.id.Thing,
		UsernameFlag: true,
		Password:     []byte(d.id.Secret),
		PasswordFlag: true,
		// paho sizes a channel by the receive maximum: the default 65,535
		// would cost 512 KiB per device.
		Properties: &paho.ConnectProperties{ReceiveMaximum: new(uint16(receiveMaximum))},
	})
	if err != nil {
		_ = conn.Close()
		if ca != nil && ca.ReasonCode >= 0x80 {
			reason := ""
			if ca.Properties != nil {
				reason = ca.Properties.ReasonString
			}
			return nil, nil, fmt.Errorf("refused: %w", reasonError(ca.ReasonCode, reason))
		}
		return nil, nil, err
	}
	sa, err := c.Subscribe(cctx, &paho.Subscribe{Subscriptions: append([]paho.SubscribeOptions{
		{Topic: d.topic(commandsSuffix + "+"), QoS: 1},
		{Topic: d.topic(methodsSuffix + "+/+"), QoS: 1},
		{Topic: d.topic(deltaSuffix), QoS: 1},
		{Topic: d.topic(rejectedSuffix), QoS: 1},
	}, d.jobSubscriptions()...)})
	if err == nil {
		for _, r := range sa.Reasons {
			if r >= 0x80 {
				err = fmt.Errorf("subscribe refused: %w", reasonError(r, ""))
				break
			}
		}
	}
	if err != nil {
		_ = c.Disconnect(&paho.Disconnect{})
		return nil, nil, err
	}
	d.connects++
	if d.connects > 1 {
		d.f.reconnects.Add(1)
	}
	return c, kicked, nil
}

// receive runs on paho's goroutine: it sorts a message and hands it to the
// device loop without blocking.
func (d *device) receive(pr paho.PublishReceived) (bool, error) {
	rest, ok := strings.CutPrefix(pr.Packet.Topic, d.topic(""))
	if !ok {
		return false, nil
	}
	var in inbound
	switch {
	case strings.HasPrefix(rest, commandsSuffix):
		in = inbound{kind: inCommand, id: strings.TrimPrefix(rest, commandsSuffix)}
	case strings.HasPrefix(rest, methodsSuffix):
		method, reqID, ok := strings.Cut(strings.TrimPrefix(rest, methodsSuffix), "/")
		if !ok || method == "res" {
			return false, nil
		}
		in = inbound{kind: inMethod, method: method, id: reqID}
	case rest == deltaSuffix:
		in = inbound{kind: inDelta}
	case rest == rejectedSuffix:
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(pr.Packet.Payload, &e)
		d.f.fail(d.id.Thing, "shadow update", fmt.Errorf("rejected: %d %s", e.Code, e.Message))
		return true, nil
	default:
		j, ok := d.receiveJob(rest, pr.Packet.Payload)
		if !ok {
			return false, nil
		}
		in = j
	}
	in.payload = append([]byte(nil), pr.Packet.Payload...)
	select {
	case d.inbox <- in:
	default:
		d.f.fail(d.id.Thing, "receive", fmt.Errorf("%d messages waiting: dropped the message on %s", inboxSize, pr.Packet.Topic))
	}
	return true, nil
}

// timerC returns t's channel, or nil (never ready) for no timer.
func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

// errReboot ends a session for a reboot.
var errReboot = fmt.Errorf("reboot")

// session runs one connection: it reports the shadow, then publishes
// telemetry on a jittered timer and handles what the platform sends until
// ctx is done (DISCONNECT, nil), the connection is lost
// (errConnectionLost) or a reboot command (errReboot).
func (d *device) session(ctx context.Context, c *paho.Client, kicked <-chan error) error {
	d.f.connectedNow()
	defer d.f.connected.Add(-1)

	d.last = d.model.Step(time.Now())
	d.battery = int(d.last.Battery)
	if err := d.report(ctx, c, d.reported()); err != nil {
		d.f.fail(d.id.Thing, "shadow update", err)
	}
	if d.reboot != nil && d.rebootTimer == nil {
		out := map[string]any{"bootCount": d.boots, "downtimeMs": time.Since(d.downSince).Milliseconds()}
		d.finish(ctx, c, *d.reboot, commandResult{Status: "succeeded", Output: out})
		d.reboot = nil
	}

	d.askNextJob(ctx, c) // jobs queued while it was away

	// The first message comes after a random part of the interval, so
	// devices that connect together do not publish in lock-step.
	next := time.Now().Add(time.Duration(d.rng.Float64() * float64(d.interval())))
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	// schedule sets the timer for the message after next: on a fixed
	// schedule, so the time a publish takes does not lower the rate, but
	// without a burst to catch up after a stall.
	schedule := func() {
		now := time.Now()
		next = next.Add(d.interval())
		if next.Before(now) {
			next = now
		}
		timer.Reset(time.Until(next))
	}
	for {
		select {
		case <-ctx.Done():
			_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
			return nil
		case <-c.Done():
			// paho calls OnServerDisconnect just after closing: give it
			// a moment to say why.
			select {
			case err := <-kicked:
				return err
			case <-time.After(100 * time.Millisecond):
				return errConnectionLost
			}
		case <-timer.C:
			d.telemetry(ctx, c)
			schedule()
		case <-timerC(d.rebootTimer):
			d.rebootTimer = nil
			_ = d.goDown(ctx, c)
			_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
			return errReboot
		case in := <-d.inbox:
			rateBefore := d.rate
			var err error
			switch in.kind {
			case inCommand:
				err = d.command(ctx, c, in)
			case inMethod:
				d.method(ctx, c, in)
			case inDelta:
				d.delta(ctx, c, in.payload)
			case inJob:
				d.job(ctx, c, in)
			}
			if err == errReboot {
				_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
				return errReboot
			}
			if d.rate != rateBefore {
				next = time.Now()
				schedule()
			}
		}
	}
}

// interval is the time to the next telemetry message: 1/rate, ±10%.
func (d *device) interval() time.Duration {
	base := float64(time.Second) / d.rate
	return time.Duration(base * (0.9 + 0.2*d.rng.Float64()))
}

// telemetry publishes one reading, and the battery in the shadow when it
// crossed a whole percent.
func (d *device) telemetry(ctx context.Context, c *paho.Client) {
	d.last = d.model.Step(time.Now())
	d.readings++
	if sc := d.f.opts.Scenario; sc != nil && d.index == 0 && !sc.apply(d.readings, time.Since(d.f.started), &d.last) {
		return
	}
	payload, _ := json.Marshal(d.last)
	if err := d.publish(ctx, c, core.ThingTopic(d.id.Thing, "telemetry"), d.f.opts.QoS, payload); err != nil {
		if ctx.Err() == nil {
			d.f.fail(d.id.Thing, "publish telemetry", err)
		}
		return
	}
	d.f.sent.Add(1)
	if b := int(d.last.Battery); b != d.battery {
		d.battery = b
		if err := d.report(ctx, c, map[string]any{"battery": b}); err != nil && ctx.Err() == nil {
			d.f.fail(d.id.Thing, "shadow update", err)
		}
	}
}

// publish sends one message and waits for its PUBACK at QoS 1; a PUBACK
// with an error reason code is an error.
func (d *device) publish(ctx context.Context, c *paho.Client, topic string, qos byte, payload []byte) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := c.Publish(pctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	if r != nil && r.ReasonCode >= 0x80 {
		reason := ""
		if r.Properties != nil {
			reason = r.Properties.ReasonString
		}
		return fmt.Errorf("refused: %w", reasonError(r.ReasonCode, reason))
	}
	return err
}

// reported is the whole reported state of the device.
func (d *device) reported() map[string]any {
	m := map[string]any{}
	for k, v := range d.extra {
		m[k] = v
	}
	m["model"] = d.id.Model
	m["firmware"] = d.firmware
	m["site"] = d.id.Site.Code
	m["locked"] = d.locked
	m["lockMessage"] = nil // null deletes it from the shadow
	if d.lockMessage != "" {
		m["lockMessage"] = d.lockMessage
	}
	m["rate"] = d.rate
	m["battery"] = int(d.last.Battery)
	m["bootCount"] = d.boots
	m["bootedAt"] = d.bootedAt.UTC().Format(time.RFC3339)
	m["mode"] = "running"
	return m
}

// report publishes reported state on the shadow update topic.
func (d *device) report(ctx context.Context, c *paho.Client, reported map[string]any) error {
	payload, err := json.Marshal(map[string]any{"state": map[string]any{"reported": reported}})
	if err != nil {
		return err
	}
	return d.publish(ctx, c, d.topic("shadow/update"), 1, payload)
}

// ---- shadow delta ----

// delta applies an update/delta document: known keys (rate, locked,
// firmware) are applied when valid, unknown keys are taken as they are;
// the result is reported back, which clears the delta.
func (d *device) delta(ctx context.Context, c *paho.Client, payload []byte) {
	state, err := parseDelta(payload)
	if err != nil {
		d.f.fail(d.id.Thing, "shadow delta", err)
		return
	}
	rep, problems := d.apply(state)
	if len(problems) > 0 {
		rep["configError"] = strings.Join(problems, "; ")
	} else {
		rep["configError"] = nil
	}
	d.f.deltas.Add(1)
	if err := d.report(ctx, c, rep); err != nil && ctx.Err() == nil {
		d.f.fail(d.id.Thing, "shadow update", err)
	}
}

// parseDelta returns the state of an update/delta document.
func parseDelta(payload []byte) (map[string]any, error) {
	var doc struct {
		State map[string]any `json:"state"`
	}
	if err := json.Unmarshal(payload, &doc); err != nil || doc.State == nil {
		return nil, fmt.Errorf("not a delta document: %.100q", payload)
	}
	return doc.State, nil
}

// apply applies settings (from a delta or a configure command) and returns
// what to report and the settings it refused.
func (d *device) apply(settings map[string]any) (map[string]any, []string) {
	rep := map[string]any{}
	var problems []string
	for k, v := range settings {
		switch k {
		case "rate":
			r, ok := v.(float64)
			if !ok || math.IsNaN(r) || r < MinRate || r > MaxRate {
				problems = append(problems, fmt.Sprintf("rate must be a number from %g to %g", MinRate, MaxRate))
				continue
			}
			d.rate = r
			rep[k] = r
		case "locked":
			b, ok := v.(bool)
			if !ok {
				problems = append(problems, "locked must be true or false")
				continue
			}
			d.locked = b
			rep[k] = b
		case "firmware":
			s, ok := v.(string)
			if !ok || s == "" {
				problems = append(problems, "firmware must be a version string")
				continue
			}
			d.firmware = s
			rep[k] = s
		case "model", "site", "battery", "bootCount", "bootedAt", "configError":
			problems = append(problems, k+" is read-only")
		default:
			d.extra[k] = v
			rep[k] = v
		}
	}
	return rep, problems
}

// ---- commands ----

// command is the JSON a device receives on $mote/things/{thing}/commands/{id}.
type command struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Payload   json.RawMessage `json:"payload"`
	ExpiresAt *time.Time      `json:"expiresAt"`
}

// commandResult is what a device reports on .../commands/{id}/result.
type commandResult struct {
	Status string `json:"status"` // succeeded, failed or rejected
	Output any    `json:"output,omitempty"`
}

// Standard command names.
var standardCommands = []string{"reboot", "lock", "unlock", "wipe", "locate", "configure"}

// parseCommand decodes a command message; the id of the topic wins over
// the body's.
func parseCommand(topicID string, payload []byte) (command, error) {
	var cmd command
	if err := json.Unmarshal(payload, &cmd); err != nil {
		return command{ID: topicID}, fmt.Errorf("the command is not valid JSON: %v", err)
	}
	cmd.ID = topicID
	if cmd.Name == "" {
		return cmd, fmt.Errorf("the command has no name")
	}
	return cmd, nil
}

// command executes a command and reports its result. It returns errReboot
// when the device must go offline; the result is then reported after the
// reboot.
func (d *device) command(ctx context.Context, c *paho.Client, in inbound) error {
	if in.id == "" || strings.Contains(in.id, "/") {
		return nil
	}
	if d.reboot != nil && d.reboot.ID == in.id {
		return nil // delivered again while it runs
	}
	if res, ok := d.results[in.id]; ok {
		// Delivered again (the acknowledgement was lost): report the
		// same result, do not execute twice.
		d.publishResult(ctx, c, in.id, res)
		return nil
	}
	cmd, err := parseCommand(in.id, in.payload)
	if err != nil {
		d.finish(ctx, c, cmd, commandResult{Status: "rejected", Output: map[string]any{"error": err.Error()}})
		return nil
	}
	if cmd.ExpiresAt != nil && time.Now().After(*cmd.ExpiresAt) {
		d.finish(ctx, c, cmd, commandResult{Status: "rejected", Output: map[string]any{"error": "expired at " + cmd.ExpiresAt.UTC().Format(time.RFC3339)}})
		return nil
	}
	if cmd.Name == "reboot" && d.reboot != nil {
		d.finish(ctx, c, cmd, commandResult{Status: "rejected", Output: map[string]any{"error": "a reboot is already pending (command " + d.reboot.ID + ")"}})
		return nil
	}
	res, reboot := d.execute(cmd)
	if !reboot {
		d.finish(ctx, c, cmd, res)
		return nil
	}
	// The result is reported once the device is back online.
	d.reboot = &cmd
	if d.rebootDelay > 0 {
		d.rebootTimer = time.NewTimer(d.rebootDelay)
		return nil
	}
	return d.goDown(ctx, c)
}

// goDown starts a reboot: the device tells its shadow and returns
// errReboot, on which the session disconnects.
func (d *device) goDown(ctx context.Context, c *paho.Client) error {
	d.boots++
	d.downSince = time.Now()
	d.bootedAt = d.downSince.Add(d.f.opts.RebootDelay)
	// Reporting also makes sure the command's PUBACK went out before the
	// connection closes.
	_ = d.report(ctx, c, map[string]any{"mode": "rebooting"})
	return errReboot
}

// execute runs a command on the device's state. It returns the result,
// or reboot = true for a reboot (which the session carries out).
func (d *device) execute(cmd command) (res commandResult, reboot bool) {
	ok := func(out any) commandResult { return commandResult{Status: "succeeded", Output: out} }
	failed := func(format string, args ...any) commandResult {
		return commandResult{Status: "failed", Output: map[string]any{"error": fmt.Sprintf(format, args...)}}
	}
	rejected := func(format string, args ...any) commandResult {
		return commandResult{Status: "rejected", Output: map[string]any{"error": fmt.Sprintf(format, args...)}}
	}
	switch cmd.Name {
	case "reboot":
		var p struct {
			DelaySeconds *int `json:"delaySeconds"`
		}
		if err := decodePayload(cmd.Payload, &p); err != nil {
			return rejected("%v", err), false
		}
		d.rebootDelay = 0
		if p.DelaySeconds != nil {
			if *p.DelaySeconds < 0 || *p.DelaySeconds > 86400 {
				return rejected("delaySeconds must be from 0 to 86400"), false
			}
			d.rebootDelay = time.Duration(*p.DelaySeconds) * time.Second
		}
		return commandResult{}, true
	case "lock":
		var p struct {
			Message *string `json:"message"`
			PIN     *string `json:"pin"`
		}
		if err := decodePayload(cmd.Payload, &p); err != nil {
			return rejected("%v", err), false
		}
		d.locked, d.lockMessage, d.pin = true, "", ""
		if p.Message != nil {
			d.lockMessage = *p.Message
		}
		if p.PIN != nil {
			d.pin = *p.PIN
		}
		return ok(map[string]any{"locked": true}), false
	case "unlock":
		var p struct {
			PIN *string `json:"pin"`
		}
		if err := decodePayload(cmd.Payload, &p); err != nil {
			return rejected("%v", err), false
		}
		if d.pin != "" && (p.PIN == nil || *p.PIN != d.pin) {
			return failed("wrong PIN"), false
		}
		d.locked, d.lockMessage, d.pin = false, "", ""
		return ok(map[string]any{"locked": false}), false
	case "wipe":
		var p struct {
			Confirm *bool `json:"confirm"`
		}
		if err := decodePayload(cmd.Payload, &p); err != nil {
			return rejected("%v", err), false
		}
		if p.Confirm == nil || !*p.Confirm {
			return rejected(`wipe needs the payload {"confirm": true}`), false
		}
		d.rate = d.f.opts.Rate
		d.locked, d.lockMessage, d.pin = false, "", ""
		d.extra = map[string]any{}
		return ok(map[string]any{"wiped": true}), false
	case "locate":
		p := d.model.Position()
		return ok(map[string]any{"lat": round(p.Lat, 6), "lon": round(p.Lon, 6), "accuracy": d.model.Accuracy()}), false
	case "configure":
		var p struct {
			Settings map[string]any `json:"settings"`
		}
		if err := decodePayload(cmd.Payload, &p); err != nil || p.Settings == nil {
			return rejected(`configure needs the payload {"settings": {...}}, e.g. {"settings": {"rate": 2}}`), false
		}
		for k := range p.Settings {
			if k != "rate" && k != "locked" && k != "firmware" {
				return failed("unknown setting %q (known: rate, locked, firmware)", k), false
			}
		}
		applied, problems := d.apply(p.Settings)
		if len(problems) > 0 {
			return failed("%s", strings.Join(problems, "; ")), false
		}
		return ok(map[string]any{"applied": applied}), false
	}
	return commandResult{Status: "rejected", Output: map[string]any{
		"error": fmt.Sprintf("unknown command %q (known: %s)", cmd.Name, strings.Join(standardCommands, ", ")),
	}}, false
}

// decodePayload decodes a command's payload into v; no payload (or null)
// leaves v as it is.
func decodePayload(payload json.RawMessage, v any) error {
	if len(payload) == 0 || string(payload) == "null" {
		return nil
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("bad payload %.100s: %v", payload, err)
	}
	return nil
}

// finish remembers and reports a command's result, and reports the state
// it may have changed.
func (d *device) finish(ctx context.Context, c *paho.Client, cmd command, res commandResult) {
	d.f.commands.Add(1)
	d.remember(cmd.ID, res)
	d.publishResult(ctx, c, cmd.ID, res)
	if res.Status == "succeeded" {
		switch cmd.Name {
		case "lock", "unlock", "wipe", "configure":
			if err := d.report(ctx, c, d.reported()); err != nil && ctx.Err() == nil {
				d.f.fail(d.id.Thing, "shadow update", err)
			}
		}
	}
}

func (d *device) remember(id string, res commandResult) {
	if _, ok := d.results[id]; !ok {
		d.resultList = append(d.resultList, id)
	}
	d.results[id] = res
	if len(d.resultList) > recentCommands {
		delete(d.results, d.resultList[0])
		d.resultList = d.resultList[1:]
	}
}

func (d *device) publishResult(ctx context.Context, c *paho.Client, id string, res commandResult) {
	payload, _ := json.Marshal(res)
	if err := d.publish(ctx, c, d.topic(commandsSuffix+id+"/result"), 1, payload); err != nil && ctx.Err() == nil {
		d.f.fail(d.id.Thing, "command result", err)
	}
}

// ---- direct methods ----

// method answers a direct method on
// $mote/things/{thing}/methods/res/{status}/{requestId}.
func (d *device) method(ctx context.Context, c *paho.Client, in inbound) {
	if in.id == "" || strings.Contains(in.id, "/") {
		return
	}
	status, body := d.call(in.method, in.payload)
	payload, _ := json.Marshal(body)
	d.f.methods.Add(1)
	topic := d.topic(fmt.Sprintf("%sres/%d/%s", methodsSuffix, status, in.id))
	if err := d.publish(ctx, c, topic, 1, payload); err != nil && ctx.Err() == nil {
		d.f.fail(d.id.Thing, "method response", err)
	}
}

// Methods the simulated device answers.
var methodNames = []string{"ping", "locate", "getTelemetry", "getState", "getConfig"}

// call runs a direct method and returns the status and the response.
func (d *device) call(method string, _ []byte) (int, any) {
	switch method {
	case "ping":
		return 200, map[string]any{"pong": true, "ts": time.Now().UnixMilli(), "uptimeSeconds": int(time.Since(d.bootedAt).Seconds())}
	case "locate":
		p := d.model.Position()
		return 200, map[string]any{"lat": round(p.Lat, 6), "lon": round(p.Lon, 6), "accuracy": d.model.Accuracy()}
	case "getTelemetry":
		return 200, d.last
	case "getState":
		return 200, d.reported()
	case "getConfig":
		cfg := map[string]any{}
		for k, v := range d.extra {
			cfg[k] = v
		}
		cfg["rate"], cfg["locked"], cfg["firmware"] = d.rate, d.locked, d.firmware
		return 200, cfg
	}
	return 404, map[string]any{"error": fmt.Sprintf("unknown method %q (known: %s)", method, strings.Join(methodNames, ", "))}
}

// ---- reason codes ----

// reasonError describes an MQTT 5 reason code.
func reasonError(code byte, reason string) error {
	name := reasonNames[code]
	if name == "" {
		name = "error"
	}
	if reason != "" {
		return fmt.Errorf("%s (0x%02X): %s", name, code, reason)
	}
	return fmt.Errorf("%s (0x%02X)", name, code)
}

func disconnectReason(dc *paho.Disconnect) string {
	if dc.Properties != nil {
		return dc.Properties.ReasonString
	}
	return ""
}

var reasonNames = map[byte]string{
	0x80: "unspecified error",
	0x81: "malformed packet",
	0x82: "protocol error",
	0x83: "implementation specific error",
	0x85: "client identifier not valid",
	0x86: "bad user name or password",
	0x87: "not authorized",
	0x88: "server unavailable",
	0x89: "server busy",
	0x8A: "banned",
	0x8B: "server shutting down",
	0x8D: "keep alive timeout",
	0x8E: "session taken over",
	0x8F: "topic filter invalid",
	0x90: "topic name invalid",
	0x93: "receive maximum exceeded",
	0x95: "packet too large",
	0x96: "message rate too high",
	0x97: "quota exceeded",
	0x99: "payload format invalid",
	0x9F: "connection rate exceeded",
}
