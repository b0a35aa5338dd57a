package certrotate

import (
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/core"
)

// FuzzRequest feeds arbitrary payloads and topics to the request parser
// and the topic matcher: they never panic, a payload either parses or is
// refused with an invalid/too-large kind, and a topic of another form is
// never taken for a rotation topic.
func FuzzRequest(f *testing.F) {
	f.Add(`{"csr":"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"}`, "$mote/things/dev/certificate/rotate")
	f.Add(`{"csr":""}`, "$mote/things/dev/certificate/rotate/accepted")
	f.Add(`{"csr":"x","window":"1h"}`, "$mote/things//certificate")
	f.Add(`{"csr":"x"} {}`, "$mote/things/dev/shadow/update")
	f.Add(`[]`, "things/dev/certificate/rotate")
	f.Add(strings.Repeat("a", MaxRequestSize+1), "$mote/things/a/b/certificate/rotate")
	f.Fuzz(func(t *testing.T, payload, topic string) {
		var req Request
		err := decode([]byte(payload), &req)
		if err != nil {
			if k := core.KindOf(err); k != core.KindInvalid && k != core.KindTooLarge {
				t.Fatalf("decode(%q) error kind %v; want invalid or too large", payload, k)
			}
		} else if len(payload) > MaxRequestSize {
			t.Fatalf("decode accepted %d bytes over the limit %d", len(payload), MaxRequestSize)
		}
		if IsTopic(topic) && !strings.HasPrefix(topic, topicPrefix) {
			t.Fatalf("IsTopic(%q) outside %s", topic, topicPrefix)
		}
		if thing := strings.TrimSuffix(strings.TrimPrefix(topic, topicPrefix), topicSuffix); topic == RequestTopic(thing) && !strings.Contains(thing, "/") && thing != "" && !IsTopic(topic) {
			t.Fatalf("IsTopic(%q) = false for a request topic", topic)
		}
	})
}
