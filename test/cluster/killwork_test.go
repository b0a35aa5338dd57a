package cluster_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// The device-directed work TestKill9 runs during its kill window besides
// the telemetry: shadow updates of a few things from every node (devices
// over MQTT and the REST API) and commands sent through every node's API
// to devices spread over the nodes. killWork starts both, stops them, and
// checks what the nodes recorded against what the clients saw:
//
//   - shadows: no two accepted updates of a thing got the same version,
//     each writer's accepted updates got increasing versions, the final
//     document (the same on every node) has a version that counts the
//     accepted updates (plus at most the updates whose answer was lost with
//     a dying node), holds each writer's last applied value, equals the
//     replay of the accepted updates in version order when no unanswered
//     update was applied, and its delta is desired minus reported;
//   - commands: every command an API answered 201 for ended succeeded with
//     the result of the device's one run, reached its device, and no live
//     connection received one command twice (a redelivery after a
//     reconnect is the at-least-once the protocol allows; the device
//     recognises it by its id and runs it once).
type killWork struct {
	nodes func() []*moteProc // the three nodes as they are now
	token string
	stop  chan struct{} // ends the shadow writers and command senders
	wg    sync.WaitGroup
	// devicesStop ends the command devices, after check.
	devicesStop chan struct{}
	devices     sync.WaitGroup
	devicesOnce sync.Once
	http        *http.Client

	shadows  *shadowWork
	commands *commandWork
}

const (
	kwShadowThings  = 2
	kwCommandThings = 6
	// kwCommandsPerNode bounds the commands each node's API is asked for.
	kwCommandsPerNode = 40
	kwAnswerWait      = 5 * time.Second
)

// startKillWork creates the things (through the first node) and starts the
// workload; the devices prefer node i % 3 and move on to the next node
// when their connection breaks.
func startKillWork(t *testing.T, nodes func() []*moteProc, token string) *killWork {
	t.Helper()
	w := &killWork{nodes: nodes, token: token, stop: make(chan struct{}), devicesStop: make(chan struct{}), http: &http.Client{Timeout: kwAnswerWait}}
	base := nodes()[0].api
	secret := func(name string) string {
		api(t, base, token, "POST", "/api/v1/things", map[string]any{"name": name}, nil)
		var cred struct {
			Secret string `json:"secret"`
		}
		api(t, base, token, "POST", "/api/v1/things/"+name+"/credentials", map[string]any{"type": "secret"}, &cred)
		return cred.Secret
	}
	w.shadows = &shadowWork{lastVersion: map[string]*atomic.Int64{}}
	secrets := map[string]string{}
	for i := range kwShadowThings {
		name := fmt.Sprintf("k9s-%d", i)
		secrets[name] = secret(name)
		w.shadows.things = append(w.shadows.things, name)
		w.shadows.lastVersion[name] = &atomic.Int64{}
	}
	for _, name := range w.shadows.things {
		s := secrets[name]
		for n := range 3 {
			w.wg.Add(2)
			go w.shadowDevice(name, s, n)
			go w.shadowAPI(name, n)
		}
	}
	w.commands = &commandWork{sent: map[string]sentCommand{}, devices: map[string]*commandDevice{}, refused: map[string]int{}}
	for i := range kwCommandThings {
		name := fmt.Sprintf("k9c-%d", i)
		d := &commandDevice{thing: name, secret: secret(name), got: map[string][]int{}, runs: map[string]int{}, results: map[string][]byte{}, reported: map[string]bool{}, sending: map[string]bool{}}
		w.commands.devices[name] = d
		w.commands.things = append(w.commands.things, name)
		w.devices.Add(1)
		go w.commandDevice(d, i%3)
	}
	t.Cleanup(w.stopDevices)
	for n := range 3 {
		w.wg.Add(1)
		go w.commandSender(n)
	}
	return w
}

// halt ends the workload and waits for its writers and senders (each
// wait is bounded by kwAnswerWait). The command devices stay connected
// until check has waited for the commands still on their way.
func (w *killWork) halt() {
	close(w.stop)
	w.wg.Wait()
}

// stopDevices disconnects the command devices.
func (w *killWork) stopDevices() {
	w.devicesOnce.Do(func() {
		close(w.devicesStop)
		w.devices.Wait()
	})
}

func (w *killWork) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// pace waits d or until the workload stops; false once it stopped.
func (w *killWork) pace(d time.Duration) bool {
	select {
	case <-w.stop:
		return false
	case <-time.After(d):
		return true
	}
}

// call makes an API request on node n as it is now: the status (0 when no
// answer came) and the body.
func (w *killWork) call(n int, method, path string, body any) (int, []byte) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(method, w.nodes()[n].api+path, bytes.NewReader(b))
	if err != nil {
		return 0, nil
	}
	req.Header.Set("Authorization", "Bearer "+w.token)
	req.Header.Set("Content-Type", "application/json")
	res, err := w.http.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, out
}

// dial connects a device with its own client id (MQTT 3.1.1, clean
// session, no automatic reconnect), or returns nil.
func (w *killWork) dial(n int, clientID, thing, secret string, lost func()) paho.Client {
	opts := paho.NewClientOptions().AddBroker("tcp://" + w.nodes()[n].mqtt).SetClientID(clientID).
		SetUsername(thing).SetPassword(secret).SetAutoReconnect(false).SetConnectRetry(false).
		SetCleanSession(true).SetOrderMatters(false).SetConnectTimeout(3 * time.Second).
		SetConnectionLostHandler(func(paho.Client, error) { lost() })
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(kwAnswerWait) || tok.Error() != nil {
		return nil
	}
	return cl
}

// metrics returns the samples of node n's /metrics whose names start
// with prefix.
func (w *killWork) metrics(n int, prefix string) string {
	code, body := w.call(n, "GET", "/metrics", nil)
	if code != 200 {
		return fmt.Sprintf("GET /metrics: %d", code)
	}
	var out []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}

func subscribe(cl paho.Client, filter string, h paho.MessageHandler) bool {
	tok := cl.Subscribe(filter, 1, h)
	return tok.WaitTimeout(kwAnswerWait) && tok.Error() == nil
}

func (w *killWork) check(t *testing.T) {
	t.Helper()
	w.shadows.check(t, w)
	w.commands.check(t, w)
	w.stopDevices()
}

// ---- shadows ----

// shadowUpdate is one update a writer sent and what became of it.
type shadowUpdate struct {
	thing, writer string // writer: "api<n>" (desired) or "dev<n>" (reported)
	seq           int
	state         map[string]map[string]float64 // section → key → value
	withVersion   bool
	outcome       string // accepted, rejected (code), unknown (no answer)
	code          int
	version       int64
}

type shadowWork struct {
	things      []string
	lastVersion map[string]*atomic.Int64 // thing → the highest version a writer saw

	mu      sync.Mutex
	updates []shadowUpdate
}

func (s *shadowWork) record(u shadowUpdate) {
	if u.outcome == "accepted" {
		v := s.lastVersion[u.thing]
		for {
			old := v.Load()
			if u.version <= old || v.CompareAndSwap(old, u.version) {
				break
			}
		}
	}
	s.mu.Lock()
	s.updates = append(s.updates, u)
	s.mu.Unlock()
}

// newShadowUpdate makes writer's update seq: its own key and the shared
// "mode" in its section, with the version of optimistic locking every
// third time (the last version any writer saw: often stale, so 409).
func (s *shadowWork) newShadowUpdate(thing, writer, section string, seq int) (shadowUpdate, map[string]any) {
	u := shadowUpdate{thing: thing, writer: writer, seq: seq, withVersion: seq%3 == 2,
		state: map[string]map[string]float64{section: {writer: float64(seq), "mode": float64(seq % 3)}}}
	body := map[string]any{"state": u.state, "clientToken": fmt.Sprintf("%s-%d", writer, seq)}
	if u.withVersion {
		body["version"] = s.lastVersion[thing].Load()
	}
	return u, body
}

// shadowAPI updates thing's desired state through node n's REST API.
func (w *killWork) shadowAPI(thing string, n int) {
	defer w.wg.Done()
	writer := fmt.Sprintf("api%d", n)
	for seq := 1; w.pace(100 * time.Millisecond); seq++ {
		u, body := w.shadows.newShadowUpdate(thing, writer, "desired", seq)
		code, out := w.call(n, "POST", "/api/v1/things/"+thing+"/shadows/classic", body)
		switch {
		case code == 200:
			var a struct {
				Version int64 `json:"version"`
			}
			if json.Unmarshal(out, &a) != nil || a.Version == 0 {
				u.outcome, u.code = "rejected", -1 // checked: a 200 without a version is a bug
			} else {
				u.outcome, u.version = "accepted", a.Version
			}
		case code == 0 || code >= 500:
			u.outcome, u.code = "unknown", code // the node died, or was dying
		default:
			u.outcome, u.code = "rejected", code
		}
		w.shadows.record(u)
	}
}

// shadowDevice reports thing's state over MQTT
// ($aws/things/<t>/shadow/update) from a connection of its own
// (client id <thing>-d<n>) that prefers node n, one update at a time,
// waiting for its accepted or rejected answer (matched by clientToken).
func (w *killWork) shadowDevice(thing, secret string, n int) {
	defer w.wg.Done()
	writer := fmt.Sprintf("dev%d", n)
	prefix := "$aws/things/" + thing + "/shadow/update"
	var (
		mu      sync.Mutex
		waiting = map[string]chan shadowAnswer{}
	)
	handler := func(_ paho.Client, m paho.Message) {
		var a shadowAnswer
		if json.Unmarshal(m.Payload(), &a) != nil {
			return
		}
		a.accepted = strings.HasSuffix(m.Topic(), "/accepted")
		mu.Lock()
		ch := waiting[a.ClientToken]
		delete(waiting, a.ClientToken)
		mu.Unlock()
		if ch != nil {
			ch <- a
		}
	}
	seq := 0
	for attempt := 0; !w.stopped(); attempt++ {
		lost := make(chan struct{})
		var once sync.Once
		cl := w.dial((n+attempt)%3, fmt.Sprintf("%s-d%d", thing, n), thing, secret, func() { once.Do(func() { close(lost) }) })
		if cl == nil {
			continue
		}
		if !subscribe(cl, prefix+"/accepted", handler) || !subscribe(cl, prefix+"/rejected", handler) {
			cl.Disconnect(0)
			continue
		}
		for w.pace(100 * time.Millisecond) {
			if !cl.IsConnectionOpen() {
				break
			}
			seq++
			u, body := w.shadows.newShadowUpdate(thing, writer, "reported", seq)
			token := body["clientToken"].(string)
			ch := make(chan shadowAnswer, 1)
			mu.Lock()
			waiting[token] = ch
			mu.Unlock()
			b, _ := json.Marshal(body)
			cl.Publish(prefix, 1, false, b)
			broken := false
			select {
			case a := <-ch:
				if a.accepted {
					u.outcome, u.version = "accepted", a.Version
				} else {
					u.outcome, u.code = "rejected", a.Code
				}
			case <-lost:
				u.outcome, broken = "unknown", true
			case <-time.After(kwAnswerWait):
				u.outcome = "unknown"
			}
			mu.Lock()
			delete(waiting, token)
			mu.Unlock()
			if u.outcome == "unknown" && u.code == 0 {
				u.code = -2
			}
			w.shadows.record(u)
			if broken {
				break
			}
		}
		cl.Disconnect(0)
	}
}

type shadowAnswer struct {
	ClientToken string `json:"clientToken"`
	Version     int64  `json:"version"`
	Code        int    `json:"code"`
	accepted    bool
}

// shadowDoc is a shadow as GET returns it.
type shadowDoc struct {
	State struct {
		Desired  map[string]float64 `json:"desired"`
		Reported map[string]float64 `json:"reported"`
		Delta    map[string]float64 `json:"delta"`
	} `json:"state"`
	Version int64 `json:"version"`
}

func (s *shadowWork) check(t *testing.T, w *killWork) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, thing := range s.things {
		var ups []shadowUpdate
		count := map[string]int{}
		for _, u := range s.updates {
			if u.thing == thing {
				ups = append(ups, u)
				count[u.outcome]++
				if u.outcome == "rejected" && u.code != 409 {
					t.Errorf("%s: update %s-%d rejected with %d; only 409 (version conflict) is expected", thing, u.writer, u.seq, u.code)
				}
			}
		}
		// No fork: each accepted version once.
		byVersion := map[int64]shadowUpdate{}
		for _, u := range ups {
			if u.outcome != "accepted" {
				continue
			}
			if o, dup := byVersion[u.version]; dup {
				t.Errorf("%s: version %d accepted twice: %s-%d and %s-%d", thing, u.version, o.writer, o.seq, u.writer, u.seq)
			}
			byVersion[u.version] = u
		}
		// Each writer's accepted updates in its own order.
		last := map[string]shadowUpdate{}
		for _, u := range ups {
			if u.outcome != "accepted" {
				continue
			}
			if p, ok := last[u.writer]; ok && u.version <= p.version {
				t.Errorf("%s: %s-%d got version %d after %s-%d got %d", thing, u.writer, u.seq, u.version, p.writer, p.seq, p.version)
			}
			last[u.writer] = u
		}
		// The final document, the same on every node.
		var (
			doc      shadowDoc
			versions [3]int64
		)
		err := pollFor(20*time.Second, func() bool {
			var docs []shadowDoc
			for n := range 3 {
				code, body := w.call(n, "GET", "/api/v1/things/"+thing+"/shadows/classic", nil)
				var d shadowDoc
				if code != 200 || json.Unmarshal(body, &d) != nil {
					versions[n] = -int64(code)
					return false
				}
				versions[n] = d.Version
				docs = append(docs, d)
			}
			doc = docs[0]
			return docs[1].Version == doc.Version && docs[2].Version == doc.Version
		})
		if err != nil {
			t.Errorf("%s: the three nodes do not show one shadow: versions %v (a negative one is the GET's status): %v", thing, versions, err)
			continue
		}
		accepted, unknown := int64(count["accepted"]), int64(count["unknown"])
		t.Logf("%s: %d updates: %d accepted, %d rejected (409), %d with no answer (node dying); final version %d",
			thing, len(ups), accepted, count["rejected"], unknown, doc.Version)
		if accepted < 20 {
			t.Errorf("%s: only %d accepted updates: the workload proved little", thing, accepted)
		}
		var maxV int64
		for v := range byVersion {
			maxV = max(maxV, v)
		}
		// Every accepted update adds one to the version; an update whose
		// answer was lost may or may not have been applied.
		if doc.Version < maxV || doc.Version < accepted || doc.Version > accepted+unknown {
			t.Errorf("%s: final version %d; want ≥ %d (the highest accepted), between %d accepted and %d (+ %d unanswered)",
				thing, doc.Version, maxV, accepted, accepted+unknown, unknown)
		}
		// Each writer's key holds its last applied value: its last
		// accepted one, or a later one whose answer was lost.
		for _, u := range ups {
			if u.outcome != "accepted" || last[u.writer].seq != u.seq {
				continue
			}
			section := doc.State.Reported
			if strings.HasPrefix(u.writer, "api") {
				section = doc.State.Desired
			}
			got, ok := section[u.writer]
			okValue := ok && got == float64(u.seq)
			if ok && got > float64(u.seq) {
				for _, v := range ups {
					if v.writer == u.writer && float64(v.seq) == got && v.outcome == "unknown" {
						okValue = true
					}
				}
			}
			if !okValue {
				t.Errorf("%s: %s = %v (present %v); want %d, its last accepted value, or a later unanswered one", thing, u.writer, got, ok, u.seq)
			}
		}
		// When the version counts only the accepted updates, none of the
		// unanswered ones was applied (each applied update adds one), and
		// the document is the replay of the accepted updates in version
		// order: versions 1..N, each key as the last update that set it.
		if doc.Version == accepted {
			want := map[string]map[string]float64{"desired": {}, "reported": {}}
			for _, v := range slices.Sorted(maps.Keys(byVersion)) {
				for sec, kv := range byVersion[v].state {
					maps.Copy(want[sec], kv)
				}
			}
			if !maps.Equal(want["desired"], doc.State.Desired) || !maps.Equal(want["reported"], doc.State.Reported) {
				t.Errorf("%s: final state desired %v reported %v; the accepted updates in version order give %v and %v",
					thing, doc.State.Desired, doc.State.Reported, want["desired"], want["reported"])
			}
		}
		// The delta is desired minus what reported already holds.
		delta := map[string]float64{}
		for k, v := range doc.State.Desired {
			if r, ok := doc.State.Reported[k]; !ok || r != v {
				delta[k] = v
			}
		}
		if !maps.Equal(delta, doc.State.Delta) && (len(delta) > 0 || len(doc.State.Delta) > 0) {
			t.Errorf("%s: delta %v; desired %v and reported %v give %v", thing, doc.State.Delta, doc.State.Desired, doc.State.Reported, delta)
		}
	}
}

// ---- commands ----

type sentCommand struct {
	thing string
	n     int // payload {"n": n}
	node  int // the node whose API queued it
}

// commandDevice is a device that runs commands as the protocol asks: it
// subscribes to $mote/things/<t>/commands/+, runs each command id once
// (a repeat is recognised by its id), and reports the result at QoS 1 on
// .../result until it has a PUBACK for it (again every second, after a
// reconnect, and when the command comes again).
type commandDevice struct {
	thing, secret string

	mu       sync.Mutex
	epoch    int              // the connection the device is on (counts connects)
	got      map[string][]int // command id → the epochs it arrived on
	runs     map[string]int   // command id → times the device ran it
	results  map[string][]byte
	reported map[string]bool // a PUBACK came for its result
	sending  map[string]bool // its result is being published
	bad      []string        // malformed commands
}

type commandWork struct {
	things  []string
	devices map[string]*commandDevice

	mu      sync.Mutex
	sent    map[string]sentCommand // id → command, for every 201
	refused map[string]int         // why a POST got no 201: status or "no answer"
	moved   atomic.Int64           // device reconnections
}

// report publishes the result of id and marks it once acknowledged; it
// runs on its own goroutine, so that a publish the server holds (its
// PUBACK waits for JetStream) never holds up the device's receiving.
// The caller holds d.mu.
func (d *commandDevice) report(cl paho.Client, id string, result []byte) {
	d.sending[id] = true
	go func() {
		tok := cl.Publish(fmt.Sprintf("$mote/things/%s/commands/%s/result", d.thing, id), 1, false, result)
		ok := tok.WaitTimeout(kwAnswerWait) && tok.Error() == nil
		d.mu.Lock()
		d.sending[id] = false
		d.reported[id] = d.reported[id] || ok
		d.mu.Unlock()
	}()
}

func (w *killWork) commandDevice(d *commandDevice, n int) {
	defer w.devices.Done()
	for attempt := 0; ; attempt++ {
		select {
		case <-w.devicesStop:
			return
		default:
		}
		lost := make(chan struct{})
		var once sync.Once
		cl := w.dial((n+attempt)%3, d.thing, d.thing, d.secret, func() { once.Do(func() { close(lost) }) })
		if cl == nil {
			continue
		}
		if attempt > 0 {
			w.commands.moved.Add(1)
		}
		d.mu.Lock()
		d.epoch++
		epoch := d.epoch
		d.mu.Unlock()
		ok := subscribe(cl, "$mote/things/"+d.thing+"/commands/+", func(cl paho.Client, m paho.Message) {
			id := strings.TrimPrefix(m.Topic(), "$mote/things/"+d.thing+"/commands/")
			var c struct {
				ID      string `json:"id"`
				Name    string `json:"name"`
				Payload struct {
					N int `json:"n"`
				} `json:"payload"`
			}
			d.mu.Lock()
			defer d.mu.Unlock()
			if json.Unmarshal(m.Payload(), &c) != nil || c.ID != id || c.Name != "k9" {
				d.bad = append(d.bad, m.Topic())
				return
			}
			d.got[id] = append(d.got[id], epoch)
			if _, done := d.results[id]; !done {
				d.runs[id]++
				d.results[id] = fmt.Appendf(nil, `{"status":"succeeded","output":{"n":%d,"epoch":%d}}`, c.Payload.N, epoch)
			}
			d.reported[id] = false
			if !d.sending[id] {
				d.report(cl, id, d.results[id])
			}
		})
		if !ok {
			cl.Disconnect(0)
			continue
		}
		// Results not acknowledged yet (from an earlier connection, or
		// whose PUBACK did not come) are sent again every second.
		tick := time.NewTicker(time.Second)
		for live := true; live; {
			d.mu.Lock()
			for id, result := range d.results {
				if !d.reported[id] && !d.sending[id] {
					d.report(cl, id, result)
				}
			}
			d.mu.Unlock()
			select {
			case <-lost:
				live = false
			case <-w.devicesStop:
				live = false
			case <-tick.C:
			}
		}
		tick.Stop()
		cl.Disconnect(100)
	}
}

// commandSender queues commands through node n's API, round robin over the
// devices, until the workload stops or it sent kwCommandsPerNode.
func (w *killWork) commandSender(n int) {
	defer w.wg.Done()
	cw := w.commands
	for k := 0; k < kwCommandsPerNode && w.pace(150*time.Millisecond); k++ {
		thing := cw.things[(k+n)%len(cw.things)]
		num := n*1000 + k
		code, body := w.call(n, "POST", "/api/v1/things/"+thing+"/commands",
			map[string]any{"name": "k9", "payload": map[string]int{"n": num}, "ttlSeconds": 300})
		cw.mu.Lock()
		if code == 201 {
			var c struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(body, &c) == nil && c.ID != "" {
				cw.sent[c.ID] = sentCommand{thing: thing, n: num, node: n}
			} else {
				cw.refused["201 without an id"]++
			}
		} else if code == 0 {
			cw.refused["no answer"]++
		} else {
			cw.refused[fmt.Sprint(code)]++
		}
		cw.mu.Unlock()
	}
}

// check waits (30 s at most) until every command the API accepted has
// ended, then compares the server's record with the devices'.
func (cw *commandWork) check(t *testing.T, w *killWork) {
	t.Helper()
	type record struct {
		Status string `json:"status"`
		Result *struct {
			Status string `json:"status"`
			Output struct {
				N     int `json:"n"`
				Epoch int `json:"epoch"`
			} `json:"output"`
		} `json:"result"`
	}
	cw.mu.Lock()
	defer cw.mu.Unlock()
	final := map[string]record{}
	err := pollFor(30*time.Second, func() bool {
		for id, c := range cw.sent {
			if _, done := final[id]; done {
				continue
			}
			code, body := w.call(0, "GET", "/api/v1/things/"+c.thing+"/commands/"+id, nil)
			var r record
			if code != 200 || json.Unmarshal(body, &r) != nil {
				return false
			}
			if r.Status == "queued" || r.Status == "delivered" {
				return false
			}
			final[id] = r
		}
		return true
	})
	if err != nil {
		t.Errorf("commands: %d of %d accepted commands have not ended: %v", len(cw.sent)-len(final), len(cw.sent), err)
		for id, c := range cw.sent {
			if _, done := final[id]; !done {
				_, body := w.call(0, "GET", "/api/v1/things/"+c.thing+"/commands/"+id, nil)
				t.Logf("not ended: %s", body)
			}
		}
		for n := range 3 {
			t.Logf("node-%d: %s", n, w.metrics(n, "mote_command"))
		}
	}
	perNode := [3]int{}
	dupes, foreign := 0, 0
	for _, d := range cw.devices {
		d.mu.Lock()
		if len(d.bad) > 0 {
			t.Errorf("%s: malformed commands on %v", d.thing, d.bad)
		}
		for id, epochs := range d.got {
			if _, ok := cw.sent[id]; !ok {
				foreign++ // queued by a POST whose answer was lost
			}
			dupes += len(epochs) - 1
			for i := 1; i < len(epochs); i++ {
				if epochs[i] == epochs[i-1] {
					t.Errorf("%s: command %s arrived twice on one connection (epochs %v)", d.thing, id, epochs)
				}
			}
			if d.runs[id] != 1 {
				t.Errorf("%s: command %s ran %d times", d.thing, id, d.runs[id])
			}
		}
		d.mu.Unlock()
	}
	for id, c := range cw.sent {
		perNode[c.node]++
		d := cw.devices[c.thing]
		d.mu.Lock()
		epochs := d.got[id]
		d.mu.Unlock()
		if len(epochs) == 0 {
			t.Errorf("%s: command %s (n=%d, queued through node-%d) never reached the device", c.thing, id, c.n, c.node)
		}
		r, ok := final[id]
		switch {
		case !ok:
			d.mu.Lock()
			_, th := w.call(0, "GET", "/api/v1/things/"+c.thing, nil)
			t.Errorf("%s: command %s (n=%d, queued through node-%d) has not ended; the device got it on connections %v, is on connection %d, its result acknowledged %v; the thing: %s",
				c.thing, id, c.n, c.node, epochs, d.epoch, d.reported[id], th)
			d.mu.Unlock()
		case r.Status != "succeeded" || r.Result == nil || r.Result.Status != "succeeded" || r.Result.Output.N != c.n:
			t.Errorf("%s: command %s (n=%d) ended %s with %+v; want succeeded with n=%d", c.thing, id, c.n, r.Status, r.Result, c.n)
		case len(epochs) > 0 && r.Result.Output.Epoch != epochs[0]:
			t.Errorf("%s: command %s recorded the result of a run on connection %d; the device ran it on %d", c.thing, id, r.Result.Output.Epoch, epochs[0])
		}
	}
	t.Logf("commands: %d accepted (%v by node), refused %v; %d redelivered after a reconnect, %d from POSTs with no answer; %d device reconnections",
		len(cw.sent), perNode, cw.refused, dupes, foreign, cw.moved.Load())
	if perNode[1] == 0 || len(cw.sent) < 15 {
		t.Errorf("commands: %v accepted by node: the workload proved little", perNode)
	}
	if cw.moved.Load() == 0 {
		t.Error("commands: no device reconnected to another node: the kill proved nothing for commands")
	}
}
