package broker_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/store"
)

// fuzzSecret is the password of thing "fz" in FuzzMQTTInput, fixed so that
// checked-in seeds get past authentication.
const fuzzSecret = "fuzz-secret-0123456789"

// FuzzMQTTInput writes arbitrary bytes to the MQTT listener, as a device
// could, and checks that the server neither crashes nor stops serving.
// Seeds start with a valid CONNECT so the fuzzer reaches PUBLISH,
// SUBSCRIBE and the rest.
func FuzzMQTTInput(f *testing.F) {
	connect := connectPacket("fz", "fz", fuzzSecret, 30)
	f.Add([]byte{})
	f.Add(connect)
	f.Add(append(append([]byte{}, connect...), 0x30, 0x0b, 0, 6, 't', 'h', 'i', 'n', 'g', 's', 'h', 'i', '!'))
	f.Add(append(append([]byte{}, connect...), subscribePacket("things/fz/#", 1)...))
	f.Add(append(append([]byte{}, connect...), subscribePacket("#", 0)...))
	f.Add(append(append([]byte{}, connect...), 0x32, 0x10, 0, 0x0b, 't', 'h', 'i', 'n', 'g', 's', '/', 'f', 'z', '/', 'a', 0, 1, 'x'))
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Add(append(append([]byte{}, connect...), 0xe0, 0))

	s := daemontest.Start(f, func(c *config.Config) { c.ConnectTimeout = 500 * time.Millisecond })
	s.Thing(f, "fz")
	h, err := auth.LoadOrCreateHasher(datadir.HashKey(s.Dir))
	if err != nil {
		f.Fatal(err)
	}
	_, err = s.Registry().Store().Credentials().Create(context.Background(), store.Credential{
		ID: "cred_fuzz", Thing: "fz", Type: store.CredentialSecret, SecretHash: h.Hash(fuzzSecret)})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, in []byte) {
		conn, err := net.Dial("tcp", s.MQTT)
		if err != nil {
			t.Fatalf("server stopped accepting: %v", err)
		}
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		_, _ = conn.Write(in)
		// Half-close: the server reads the input, then end of stream, and
		// closes; whatever it answered is read until then.
		_ = conn.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, conn)
		_ = conn.Close()

		// The server still serves a well-behaved client.
		c, err := net.Dial("tcp", s.MQTT)
		if err != nil {
			t.Fatalf("server stopped accepting: %v", err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(connectPacket("probe", "fz", fuzzSecret, 30)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || buf[0] != 0x20 || buf[3] != 0 {
			t.Fatalf("after input %x the server answers a valid CONNECT with %x, %v", in, buf, err)
		}
	})
}
