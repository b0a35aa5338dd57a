package broker

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// A connection lives no longer than the credential it authenticated
// with: a timer armed when its session is established closes it when the
// secret or certificate expires (auth.Identity.Expires). MQTT 5 clients
// get DISCONNECT 0xA0 "maximum connect time": the time this connection
// was authorized for is over — a client may reconnect at once with a
// fresh credential, and the expired one is then refused at CONNECT with
// 0x87. MQTT 3.1.1 has no DISCONNECT from the server: the connection is
// closed. A persistent session lives on for the thing's next connection.

// armExpiry starts s's expiry timer; it runs on the connection's goroutine
// before any packet of the client is read, and removeSession stops it.
func (b *Broker) armExpiry(s *session) {
	if s.id.Expires.IsZero() {
		return
	}
	s.expiry = time.AfterFunc(time.Until(s.id.Expires), func() { b.credentialExpired(s) })
}

// ExpireCredential closes, at at, every connection of thing that
// authenticated with credential: the end of a rotation window (the
// registry brought the credential's expiry forward). A connection whose
// credential expires earlier anyway keeps its own timer.
func (b *Broker) ExpireCredential(thing, credential string, at time.Time) {
	for _, s := range b.sessionsOf(thing) {
		if s.id.Credential != credential || (!s.id.Expires.IsZero() && !at.Before(s.id.Expires)) {
			continue
		}
		t := time.AfterFunc(time.Until(at), func() { b.credentialExpired(s) })
		s.rotMu.Lock()
		old := s.rotation
		s.rotation = t
		s.rotMu.Unlock()
		if old != nil {
			old.Stop()
		}
	}
}

// credentialExpired closes a connection whose credential expired.
func (b *Broker) credentialExpired(s *session) {
	if b.current(s.cl) != s || b.closed.Load() {
		return // already gone
	}
	s.expired.Store(true)
	b.metrics.closed.WithLabelValues("credential_expired").Inc()
	b.connLog.Info("disconnecting client: credential expired", "client", clip(s.cl.ID), "thing", s.id.Thing,
		"credential", s.id.Credential, "expired", s.id.Expires)
	b.closeClient(s.cl, packets.ErrMaxConnectTime)
}

// closeClient ends a connection from the server's side: MQTT 5 clients
// are sent DISCONNECT with code, MQTT 3.1.1 clients (for which DISCONNECT
// only goes from client to server) are just closed.
func (b *Broker) closeClient(cl *mqtt.Client, code packets.Code) {
	if cl.Properties.ProtocolVersion >= 5 {
		_ = b.server.DisconnectClient(cl, code)
		return
	}
	cl.Stop(code)
}
