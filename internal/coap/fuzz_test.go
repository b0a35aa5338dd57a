package coap

import (
	"bytes"
	"context"
	"crypto/x509"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/store"
)

// Fakes for a server without a daemon: thing "f" with secret "s".
type fakeAuth struct{}

func (fakeAuth) Secret(_ context.Context, thing, secret string) (auth.Identity, error) {
	if thing == "f" && secret == "s" {
		return auth.Identity{Thing: "f"}, nil
	}
	return auth.Identity{}, auth.ErrBadSecret
}
func (fakeAuth) Certificate(context.Context, *x509.Certificate) (auth.Identity, error) {
	return auth.Identity{}, auth.ErrUnknownCertificate
}
func (fakeAuth) PSK(context.Context, string) ([]byte, auth.Identity, error) {
	return nil, auth.Identity{}, auth.ErrBadSecret
}

type fakeGateway struct{}

func (fakeGateway) PublishVia(context.Context, string, string, string, string, []byte, byte, bool) error {
	return nil
}
func (fakeGateway) Authorize(context.Context, string, string, string, string) error { return nil }

type fakeShadows struct{}

func (fakeShadows) Get(context.Context, string, string) ([]byte, error) {
	return []byte(`{"state":{"reported":{"on":true}},"version":1}`), nil
}
func (fakeShadows) Update(_ context.Context, _, _ string, p []byte) ([]byte, error) { return p, nil }

type fakeCommands struct{}

func (fakeCommands) Poll(ctx context.Context, _ string, wait time.Duration) ([]store.Command, error) {
	if wait > 0 {
		<-ctx.Done()
	}
	return []store.Command{}, nil
}
func (fakeCommands) Report(context.Context, string, string, store.CommandResult) (store.Command, error) {
	return store.Command{ID: "c1", Status: store.CommandSucceeded}, nil
}

var (
	fuzzOnce sync.Once
	fuzzSrv  *Server
)

// fuzzServer is one server for all inputs (port 0, token auth, fakes).
func fuzzServer(tb testing.TB) *Server {
	fuzzOnce.Do(func() {
		s, err := New(Options{Addr: "127.0.0.1:0", TokenAuth: true, Auth: fakeAuth{}, Gateway: fakeGateway{},
			Shadows: fakeShadows{}, Commands: fakeCommands{}, MaxPayload: 4096, RequestTimeout: time.Second})
		if err != nil {
			tb.Fatal(err)
		}
		if err := s.Start(); err != nil {
			tb.Fatal(err)
		}
		fuzzSrv = s
	})
	return fuzzSrv
}

func encode(tb testing.TB, setup func(m *pool.Message) error, typ message.Type, mid int32) []byte {
	tb.Helper()
	m := pool.NewMessage(context.Background())
	if err := setup(m); err != nil {
		tb.Fatal(err)
	}
	m.SetType(typ)
	m.SetMessageID(mid)
	b, err := m.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

var tokenOpt = message.Option{ID: message.URIQuery, Value: []byte("token=f:s")}

// FuzzHandler sends raw datagrams to a live server, then a well-formed
// request that must still be answered: no input crashes or wedges the
// server.
func FuzzHandler(f *testing.F) {
	post := encode(f, func(m *pool.Message) error {
		return m.SetupPost("/things/f/telemetry", []byte{1, 2}, message.AppJSON, bytes.NewReader([]byte(`{"t":1}`)), tokenOpt)
	}, message.Confirmable, 1)
	cbor := encode(f, func(m *pool.Message) error {
		return m.SetupPut("/things/f/shadow", []byte{3}, message.AppCBOR, bytes.NewReader([]byte{0xa1, 0x61, 0x61, 0x01}), tokenOpt)
	}, message.Confirmable, 2)
	observe := encode(f, func(m *pool.Message) error {
		if err := m.SetupGet("/things/f/commands", []byte{4}, tokenOpt); err != nil {
			return err
		}
		m.SetObserve(0)
		return nil
	}, message.Confirmable, 3)
	block := encode(f, func(m *pool.Message) error {
		if err := m.SetupPost("/things/f/logs", []byte{5}, message.TextPlain, bytes.NewReader(bytes.Repeat([]byte("x"), 16)), tokenOpt); err != nil {
			return err
		}
		m.SetOptionUint32(message.Block1, 3<<4|1<<3) // num 3... more, size 16
		return nil
	}, message.Confirmable, 4)
	tagged := encode(f, func(m *pool.Message) error {
		if err := m.SetupPost("/things/f/logs", []byte{8, 1}, message.TextPlain, bytes.NewReader(bytes.Repeat([]byte("z"), 16)), tokenOpt, message.Option{ID: 292, Value: []byte{0x2b}}); err != nil {
			return err
		}
		m.SetOptionUint32(message.Block1, 1<<3) // num 0, more, size 16, Request-Tag
		return nil
	}, message.Confirmable, 7)
	huge := encode(f, func(m *pool.Message) error {
		if err := m.SetupPost("/things/f/logs", []byte{6}, message.TextPlain, bytes.NewReader([]byte("x")), tokenOpt); err != nil {
			return err
		}
		m.SetOptionUint32(message.Size1, 1<<30)
		return nil
	}, message.NonConfirmable, 5)
	result := encode(f, func(m *pool.Message) error {
		return m.SetupPost("/things/f/commands/c1", []byte{7}, message.AppJSON, bytes.NewReader([]byte(`{"status":"succeeded"}`)), tokenOpt)
	}, message.Confirmable, 6)
	for _, seed := range [][]byte{post, cbor, observe, block, tagged, huge, result, {}, {0x40}, {0x40, 0x01, 0x00, 0x01}, []byte("garbage")} {
		f.Add(seed)
	}
	s := fuzzServer(f)
	udpAddr, _ := s.Addrs()
	// Inputs come from one socket, probes from another: a probe sharing
	// the inputs' peer would collide with their message ids, which the
	// server rightly deduplicates (RFC 7252 §4.5).
	conn, err := net.Dial("udp", udpAddr)
	if err != nil {
		f.Fatal(err)
	}
	defer conn.Close()
	probeConn, err := net.Dial("udp", udpAddr)
	if err != nil {
		f.Fatal(err)
	}
	defer probeConn.Close()
	var mid int32 = 1000
	f.Fuzz(func(t *testing.T, datagram []byte) {
		if _, err := conn.Write(datagram); err != nil {
			t.Fatal(err)
		}
		mid++
		tok := []byte{0xee, byte(mid >> 8), byte(mid)}
		probe := encode(t, func(m *pool.Message) error { return m.SetupGet("/things/f/shadow", tok, tokenOpt) }, message.Confirmable, mid&0xffff)
		// Retransmit like a client until the answer to this token comes
		// (a datagram may be lost, or the input closed the session).
		buf := make([]byte, 8192)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := probeConn.Write(probe); err != nil {
				t.Fatal(err)
			}
			_ = probeConn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			for {
				n, err := probeConn.Read(buf)
				if err != nil {
					break // resend
				}
				m := pool.NewMessage(context.Background())
				if _, err := m.UnmarshalWithDecoder(coder.DefaultCoder, buf[:n]); err == nil && bytes.Equal(m.Token(), tok) {
					if m.Code() != codes.Content {
						t.Fatalf("probe answered %v; want 2.05", m.Code())
					}
					return
				}
			}
		}
		t.Fatalf("no answer to a well-formed request after input %x", datagram)
	})
}

// FuzzCBORToJSON: any input converts or fails; what converts is JSON.
func FuzzCBORToJSON(f *testing.F) {
	for _, seed := range [][]byte{{0xa1, 0x61, 0x61, 0x01}, {0xf9, 0x7e, 0x00}, {0xbf, 0xff}, {0x9f, 0x01, 0xff}, {0xc1, 0x00}, {0x5f, 0x41, 0x00, 0xff}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := cborToJSON(b)
		if err != nil {
			return
		}
		if _, err := jsonToCBOR(j); err != nil {
			t.Fatalf("cborToJSON(%x) = %s, which jsonToCBOR refuses: %v", b, j, err)
		}
	})
}
