package coap

import (
	"bytes"
	"context"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp"
)

// BenchmarkPost is a confirmable CoAP POST round trip over loopback UDP
// into the handler (token check, path, publish on a fake gateway): the
// server's own cost per request, without the broker.
func BenchmarkPost(b *testing.B) {
	s := fuzzServer(b)
	addr, _ := s.Addrs()
	cc, err := udp.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	body := []byte(`{"temp":21.5}`)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := cc.Post(context.Background(), "/things/f/telemetry", message.AppJSON, bytes.NewReader(body), tokenOpt)
		if err != nil || resp.Code() != codes.Changed {
			b.Fatalf("post = %v, %v", resp, err)
		}
	}
}
