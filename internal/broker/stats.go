package broker

import "sync/atomic"

// Stats are the broker's running totals, read cheaply (atomics only) for
// the console's live overview.
type Stats struct {
	MessagesReceived int64 // PUBLISH packets received from clients
	MessagesSent     int64 // PUBLISH packets sent to clients
	Connections      int64 // live device connections
}

// Stats returns the running totals.
func (b *Broker) Stats() Stats {
	in := b.server.Info
	return Stats{
		MessagesReceived: b.messagesReceived(),
		MessagesSent:     atomic.LoadInt64(&in.MessagesSent),
		Connections:      atomic.LoadInt64(&in.ClientsConnected),
	}
}

// messagesReceived counts PUBLISH packets from devices (MQTT, and HTTP
// device messages). mochi also counts platform publishes and, a second
// time, durable publishes handed back to it after their fsync.
func (b *Broker) messagesReceived() int64 {
	return atomic.LoadInt64(&b.server.Info.MessagesReceived) - b.notReceived.Load()
}
