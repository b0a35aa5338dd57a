package ruleengine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// The mqtt action is the outbound half of an MQTT bridge: it publishes
// the rule's output on another broker.
//
//	{"type":"mqtt","url":"mqtts://user:pass@broker.example:8883",
//	 "topic":"site-1/${topic()}","qos":1,"retain":false,"tls":{...}}
//
// A destination keeps one connection (MQTT 3.1.1, clean session) and
// dials a new one when it drops (the next attempt, after the retry's
// backoff). While it is down an attempt waits
// for it at most the action's timeout and nothing is buffered in the
// client: the destination's bounded queue (--rule-action-queue) is the
// buffer, and what does not fit is dropped and counted (queue_full), or
// goes to the error action once its retries are spent. QoS 1 waits for
// the PUBACK; a retry after a lost PUBACK may duplicate (at least once).

func checkMQTT(c *compiledAction, bad badFunc) error {
	a := &c.Action
	if _, err := mqttBroker(a.URL); err != nil {
		return bad("url", "%v", err)
	}
	if a.Topic == "" {
		return bad("topic", "an mqtt action needs a topic")
	}
	t, err := parseTemplate(a.Topic)
	if err != nil {
		return bad("topic", "%v", err)
	}
	c.topic = t
	if a.QoS != nil {
		if *a.QoS > 1 {
			return bad("qos", "must be 0 or 1")
		}
		c.qos = *a.QoS
	}
	return checkTLS(a.TLS, bad)
}

// mqttBroker returns the broker address of an mqtt(s):// URL for paho
// (tcp://host:port or ssl://host:port, without user information).
func mqttBroker(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if raw == "" || err != nil || u.Host == "" {
		return nil, errors.New("want an mqtt://host:port or mqtts://host:port URL")
	}
	def := ""
	switch u.Scheme {
	case "mqtt", "tcp":
		u.Scheme, def = "tcp", "1883"
	case "mqtts", "ssl", "tls":
		u.Scheme, def = "ssl", "8883"
	default:
		return nil, errors.New("want an mqtt://host:port or mqtts://host:port URL")
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return nil, errors.New("an MQTT URL has no path or query")
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Hostname(), def
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
		return nil, errors.New("want an mqtt://host:port or mqtts://host:port URL")
	}
	u.Host = net.JoinHostPort(host, port)
	u.Path = ""
	return u, nil
}

// newMQTTClient makes a client that connects in the background and
// reconnects by itself; up is closed while it is connected.
type mqttConn struct {
	cl   paho.Client
	mu   sync.Mutex
	up   chan struct{} // closed while connected
	lost atomic.Bool   // the connection was up and dropped: this client is done
}

// dialMQTT starts a client on raw (an mqtt(s) URL with optional
// user:password) for name; subscribe, if set, runs on every connect. It
// does not wait for the connection.
func dialMQTT(raw string, t *TLSConfig, clientID string, onConnect func(paho.Client)) (*mqttConn, error) {
	u, err := mqttBroker(raw)
	if err != nil {
		return nil, err
	}
	user := u.User
	u.User = nil
	o := paho.NewClientOptions().AddBroker(u.String()).SetClientID(clientID).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(true).
		SetConnectRetryInterval(500 * time.Millisecond).SetMaxReconnectInterval(2 * time.Second).
		SetConnectTimeout(5 * time.Second).SetKeepAlive(30 * time.Second).
		SetWriteTimeout(5 * time.Second).SetOrderMatters(false).SetResumeSubs(false)
	if user != nil {
		o.SetUsername(user.Username())
		if p, ok := user.Password(); ok {
			o.SetPassword(p)
		}
	}
	tc, err := tlsConfig(t, u.Scheme == "ssl")
	if err != nil {
		return nil, err
	}
	if tc != nil {
		o.SetTLSConfig(tc)
	}
	c := &mqttConn{up: make(chan struct{})}
	o.SetOnConnectHandler(func(cl paho.Client) {
		if onConnect != nil {
			onConnect(cl)
		}
		c.mu.Lock()
		select {
		case <-c.up:
		default:
			close(c.up)
		}
		c.mu.Unlock()
	})
	o.SetConnectionLostHandler(func(paho.Client, error) {
		c.lost.Store(true)
		c.mu.Lock()
		select {
		case <-c.up:
			c.up = make(chan struct{})
		default:
		}
		c.mu.Unlock()
	})
	c.cl = paho.NewClient(o)
	c.cl.Connect() // retries in the background (SetConnectRetry)
	return c, nil
}

// wait waits until the client is connected or ctx ends.
func (c *mqttConn) wait(ctx context.Context) error {
	for !c.cl.IsConnectionOpen() {
		if c.lost.Load() {
			return errors.New("connection lost")
		}
		c.mu.Lock()
		up := c.up
		c.mu.Unlock()
		select {
		case <-up:
		case <-ctx.Done():
			return errors.New("not connected")
		}
	}
	return nil
}

func (c *mqttConn) close() { c.cl.Disconnect(250) }

// mqttClientID is a client id unique to this connection.
func mqttClientID(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	id := prefix + "-" + hex.EncodeToString(b)
	if len(id) > 23 { // MQTT 3.1.1 servers must accept 23 bytes
		id = id[len(id)-23:]
	}
	return id
}

type mqttSink struct {
	a *compiledAction
	c *mqttConn
}

func newMQTTSink(_ context.Context, a *compiledAction, d *destination) (sink, error) {
	c, err := dialMQTT(a.URL, a.TLS, mqttClientID("mote-"+d.rule.rule.Name), nil)
	if err != nil {
		return nil, fmt.Errorf("mqtt %s: %w", redactedURL(a.URL), err)
	}
	return &mqttSink{a: a, c: c}, nil
}

func (s *mqttSink) send(ctx context.Context, jobs []job) error {
	if err := s.c.wait(ctx); err != nil {
		return fmt.Errorf("mqtt %s: %w", redactedURL(s.a.URL), err)
	}
	// Publish the batch, then wait for every PUBACK (paho keeps them in
	// flight together).
	toks := make([]paho.Token, 0, len(jobs))
	for _, j := range jobs {
		topic, err := s.a.topic.expand(j.msg.Topic, j.msg.ClientID, j.msg.Thing, j.lookupOf())
		if err != nil {
			return fmt.Errorf("mqtt: %w", err)
		}
		toks = append(toks, s.c.cl.Publish(topic, s.a.qos, s.a.Retain, j.body))
	}
	for _, t := range toks {
		select {
		case <-t.Done():
			if err := t.Error(); err != nil {
				return fmt.Errorf("mqtt %s: publish: %w", redactedURL(s.a.URL), err)
			}
		case <-ctx.Done():
			return fmt.Errorf("mqtt %s: publish: no PUBACK in time", redactedURL(s.a.URL))
		}
	}
	return nil
}

// isStale reports whether the connection dropped: the destination then
// dials a new client. Paho's own reconnect is off: on reconnecting it
// resends the publishes it had in flight from a goroutine that races with
// its writer (paho.mqtt.golang 1.5.1, found by the race detector), and
// the destination retries those itself.
func (s *mqttSink) isStale() bool { return s.c.lost.Load() }

func (s *mqttSink) close() { s.c.close() }
