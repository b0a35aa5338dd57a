package core

// The topic scheme. Device telemetry is free-form under things/{thing}/;
// platform topics live under $mote/. Shadow and job topics are also accepted
// under the AWS IoT prefix $aws/things/{thing}/.
const (
	ThingsPrefix   = "things/"
	PlatformPrefix = "$mote/"
	AWSPrefix      = "$aws/things/"
	// PresenceConnected and PresenceDisconnected are followed by the client id.
	PresenceConnected    = "$mote/events/presence/connected/"
	PresenceDisconnected = "$mote/events/presence/disconnected/"
)

// ThingTopic returns things/{thing}/{suffix}.
func ThingTopic(thing, suffix string) string { return ThingsPrefix + thing + "/" + suffix }

// PlatformThingTopic returns $mote/things/{thing}/{suffix}.
func PlatformThingTopic(thing, suffix string) string {
	return PlatformPrefix + "things/" + thing + "/" + suffix
}
