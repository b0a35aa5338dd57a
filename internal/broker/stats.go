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
		MessagesReceived: atomic.LoadInt64(&in.MessagesReceived),
		MessagesSent:     atomic.LoadInt64(&in.MessagesSent),
		Connections:      atomic.LoadInt64(&in.ClientsConnected),
	}
}
