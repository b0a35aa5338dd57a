package core

import "time"

// Message is one application message as it travels from a device (or the
// platform) through the bus to shadows, rules, telemetry and subscribers.
// Payload must not be modified once a Message has been handed on.
type Message struct {
	Topic    string
	Payload  []byte
	QoS      byte
	Retain   bool
	ClientID string    // the MQTT client id that published it; "" for the platform
	Thing    string    // the authenticated thing that published it; "" for the platform
	Received time.Time // when the server received it
	Protocol string    // "mqtt", "http", "coap", "platform"
	// Seq is the message's sequence number in the ingest journal when it
	// was made durable before its acknowledgement (0: it was not). Such a
	// message reaches the rules engine from the journal, in order.
	Seq uint64
	// Node is the id of the cluster node that accepted the message, set by
	// a cluster bus (internal/bus/natsbus) so that a node can tell its own
	// messages from its peers'; "" on a single node.
	Node string
	// Properties are the message's MQTT 5 user properties (for an Azure
	// IoT Hub device, its property bag), in the order they came; a key
	// may repeat. nil for most messages.
	Properties []Property
}

// Property is one MQTT 5 user property: a name and a value.
type Property struct {
	Key, Value string
}

// Version is Mote's version, set at build time with
// -ldflags "-X github.com/moteiot/mote/internal/core.Version=v1.2.3".
var Version = "dev"
