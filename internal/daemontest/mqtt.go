package daemontest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
)

// Msg is a message a test client received.
type Msg struct {
	Topic   string
	Payload string
	QoS     byte
	Retain  bool
}

// Inbox collects received messages.
type Inbox struct {
	mu   sync.Mutex
	msgs []Msg
	ch   chan struct{}
}

func newInbox() *Inbox { return &Inbox{ch: make(chan struct{}, 1)} }

func (in *Inbox) add(m Msg) {
	in.mu.Lock()
	in.msgs = append(in.msgs, m)
	in.mu.Unlock()
	select {
	case in.ch <- struct{}{}:
	default:
	}
}

// Len returns how many messages have arrived so far.
func (in *Inbox) Len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.msgs)
}

// Distinct returns the distinct payloads received so far on topic (any
// topic if ""): QoS 1 is at least once, so a resent message may arrive
// twice.
func (in *Inbox) Distinct(topic string) map[string]bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	m := map[string]bool{}
	for _, msg := range in.msgs {
		if topic == "" || msg.Topic == topic {
			m[msg.Payload] = true
		}
	}
	return m
}

// All returns what has arrived so far.
func (in *Inbox) All() []Msg {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]Msg(nil), in.msgs...)
}

// Wait returns the first message on topic (any topic if ""), waiting up to
// timeout; it fails the test if none comes.
func (in *Inbox) Wait(tb testing.TB, topic string, timeout time.Duration) Msg {
	tb.Helper()
	m, ok := in.waitFor(topic, timeout)
	if !ok {
		tb.Fatalf("no message on %q within %v; got %v", topic, timeout, in.All())
	}
	return m
}

// None fails the test if a message on topic arrives within d.
func (in *Inbox) None(tb testing.TB, topic string, d time.Duration) {
	tb.Helper()
	if m, ok := in.waitFor(topic, d); ok {
		tb.Fatalf("unexpected message %+v", m)
	}
}

func (in *Inbox) waitFor(topic string, timeout time.Duration) (Msg, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		in.mu.Lock()
		for _, m := range in.msgs {
			if topic == "" || m.Topic == topic {
				in.mu.Unlock()
				return m, true
			}
		}
		in.mu.Unlock()
		select {
		case <-in.ch:
		case <-deadline.C:
			return Msg{}, false
		}
	}
}

// V5 is a connected MQTT 5 client (eclipse/paho.golang).
type V5 struct {
	*paho.Client
	Inbox        *Inbox
	Disconnected chan *paho.Disconnect // DISCONNECT packets from the server
	Connack      *paho.Connack
}

// V5Options tune ConnectV5.
type V5Options struct {
	ClientID      string
	Username      string
	Password      string
	TLS           *tls.Config // connect to MQTTS instead of MQTT
	CleanStart    bool
	KeepAlive     uint16
	Will          *paho.WillMessage
	SessionExpiry uint32
}

// DialV5 connects an MQTT 5 client and returns it with the CONNACK, or the
// error (with the CONNACK's reason code in Connack when refused).
func (s *Server) DialV5(tb testing.TB, o V5Options) (*V5, error) {
	tb.Helper()
	var (
		conn net.Conn
		err  error
	)
	if o.TLS != nil {
		conn, err = tls.Dial("tcp", s.MQTTS, o.TLS)
	} else {
		conn, err = net.Dial("tcp", s.MQTT)
	}
	if err != nil {
		return nil, err
	}
	c := &V5{Inbox: newInbox(), Disconnected: make(chan *paho.Disconnect, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.Inbox.add(Msg{Topic: pr.Packet.Topic, Payload: string(pr.Packet.Payload), QoS: pr.Packet.QoS, Retain: pr.Packet.Retain})
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case c.Disconnected <- d:
			default:
			}
		},
		OnClientError: func(error) {},
	})
	cp := &paho.Connect{
		ClientID:     o.ClientID,
		KeepAlive:    o.KeepAlive,
		CleanStart:   o.CleanStart,
		Username:     o.Username,
		UsernameFlag: o.Username != "",
		Password:     []byte(o.Password),
		PasswordFlag: o.Password != "",
		WillMessage:  o.Will,
	}
	if o.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	if o.SessionExpiry > 0 {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &o.SessionExpiry}
	}
	// A persistent session resumed in a cluster answers after its
	// handover and its replay (--cluster-handover-timeout,
	// --cluster-session-replay-timeout: 7 s at most by default).
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	c.Connack = ca
	if err != nil {
		_ = conn.Close()
		return c, err
	}
	tb.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, nil
}

// V5 connects an MQTT 5 client with a thing's secret and fails the test if
// it is refused.
func (s *Server) V5(tb testing.TB, thing, secret string) *V5 {
	tb.Helper()
	c, err := s.DialV5(tb, V5Options{ClientID: thing, Username: thing, Password: secret, CleanStart: true})
	if err != nil {
		tb.Fatalf("connect %s (v5): %v", thing, err)
	}
	return c
}

// Sub subscribes at QoS 1 and returns the SUBACK reason code.
func (c *V5) Sub(tb testing.TB, filter string) byte {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err != nil && sa == nil {
		tb.Fatalf("subscribe %s: %v", filter, err)
	}
	return sa.Reasons[0]
}

// Pub publishes and returns the PUBACK reason code (0 for QoS 0).
func (c *V5) Pub(tb testing.TB, topic string, qos byte, retain bool, payload string) byte {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)})
	if r != nil {
		return r.ReasonCode
	}
	if err != nil {
		tb.Fatalf("publish %s: %v", topic, err)
	}
	return 0
}

// V3 is a connected MQTT 3.1.1 client (eclipse/paho.mqtt.golang).
type V3 struct {
	paho3.Client
	Inbox *Inbox
	Lost  chan error
}

// V3Options tune DialV3.
type V3Options struct {
	ClientID  string
	Username  string
	Password  string
	Broker    string // URL; default tcp://MQTT
	TLS       *tls.Config
	Clean     *bool
	Will      *Msg
	KeepAlive time.Duration
}

// DialV3 connects an MQTT 3.1.1 client. On refusal the error is paho's
// (its text names the CONNACK return code) and code is the return code.
func (s *Server) DialV3(tb testing.TB, o V3Options) (c *V3, code byte, err error) {
	tb.Helper()
	c = &V3{Inbox: newInbox(), Lost: make(chan error, 1)}
	opts := paho3.NewClientOptions()
	broker := o.Broker
	if broker == "" {
		broker = "tcp://" + s.MQTT
		if o.TLS != nil {
			broker = "ssl://" + s.MQTTS
		}
	}
	opts.AddBroker(broker)
	opts.SetClientID(o.ClientID)
	opts.SetUsername(o.Username)
	opts.SetPassword(o.Password)
	opts.SetProtocolVersion(4)
	opts.SetAutoReconnect(false)
	opts.SetConnectRetry(false)
	opts.SetConnectTimeout(5 * time.Second)
	if o.KeepAlive > 0 {
		opts.SetKeepAlive(o.KeepAlive)
	}
	if o.TLS != nil {
		opts.SetTLSConfig(o.TLS)
	}
	if o.Clean != nil {
		opts.SetCleanSession(*o.Clean)
	}
	if o.Will != nil {
		opts.SetWill(o.Will.Topic, o.Will.Payload, o.Will.QoS, o.Will.Retain)
	}
	opts.SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) {
		c.Inbox.add(Msg{Topic: m.Topic(), Payload: string(m.Payload()), QoS: m.Qos(), Retain: m.Retained()})
	})
	opts.SetConnectionLostHandler(func(_ paho3.Client, err error) {
		select {
		case c.Lost <- err:
		default:
		}
	})
	c.Client = paho3.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(6 * time.Second) {
		return nil, 0, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, tok.(*paho3.ConnectToken).ReturnCode(), err
	}
	tb.Cleanup(func() { c.Disconnect(100) })
	return c, 0, nil
}

// V3 connects an MQTT 3.1.1 client with a thing's secret.
func (s *Server) V3(tb testing.TB, thing, secret string) *V3 {
	tb.Helper()
	c, _, err := s.DialV3(tb, V3Options{ClientID: thing, Username: thing, Password: secret})
	if err != nil {
		tb.Fatalf("connect %s (v3): %v", thing, err)
	}
	return c
}

// Sub subscribes and returns the SUBACK return code (0x80 = failure).
func (c *V3) Sub(tb testing.TB, filter string, qos byte) byte {
	tb.Helper()
	tok := c.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(5 * time.Second) {
		tb.Fatalf("subscribe %s timed out", filter)
	}
	st := tok.(*paho3.SubscribeToken)
	return st.Result()[filter]
}

// Pub publishes and waits for the acknowledgement.
func (c *V3) Pub(tb testing.TB, topic string, qos byte, retain bool, payload string) {
	tb.Helper()
	tok := c.Publish(topic, qos, retain, payload)
	if !tok.WaitTimeout(5 * time.Second) {
		tb.Fatalf("publish %s timed out", topic)
	}
	if err := tok.Error(); err != nil {
		tb.Fatalf("publish %s: %v", topic, err)
	}
}

// WSURL returns the WebSocket URL of the server as paho3 wants it.
func (s *Server) WSURL() string {
	u, _ := url.Parse(s.WS)
	return u.String()
}
