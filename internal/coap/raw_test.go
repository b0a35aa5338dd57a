package coap_test

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/moteiot/mote/internal/daemontest"
)

// rawPeer is a UDP socket that speaks CoAP datagram by datagram, as a
// device whose CoAP stack the tests control (new tokens per block, no
// ACKs).
type rawPeer struct {
	t   *testing.T
	c   *net.UDPConn
	mid uint16
}

func newRawPeer(t *testing.T, s *daemontest.Server) *rawPeer {
	t.Helper()
	a, err := net.ResolveUDPAddr("udp", coapAddr(s))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawPeer{t: t, c: c, mid: 100}
}

func (p *rawPeer) send(setup func(m *pool.Message) error, typ message.Type) {
	p.t.Helper()
	m := pool.NewMessage(ctx(p.t))
	if err := setup(m); err != nil {
		p.t.Fatal(err)
	}
	p.mid++
	m.SetType(typ)
	m.SetMessageID(int32(p.mid))
	b, err := m.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.c.Write(b); err != nil {
		p.t.Fatal(err)
	}
}

// recv is the next datagram, within 15 s.
func (p *rawPeer) recv() *pool.Message {
	p.t.Helper()
	buf := make([]byte, 4096)
	_ = p.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	n, err := p.c.Read(buf)
	if err != nil {
		p.t.Fatalf("no datagram from the server: %v", err)
	}
	m := pool.NewMessage(ctx(p.t))
	if _, err := m.UnmarshalWithDecoder(coder.DefaultCoder, buf[:n]); err != nil {
		p.t.Fatalf("bad datagram: %v", err)
	}
	return m
}

// block sends block num of body (16-byte blocks) as a confirmable POST
// with its own token, and returns the answer.
func (p *rawPeer) block(path, secret string, tok []byte, tag string, body []byte, num int) *pool.Message {
	p.t.Helper()
	const size = 16
	end := min((num+1)*size, len(body))
	more := end < len(body)
	v := uint32(num<<4 | 0) // SZX 0: 16 bytes
	if more {
		v |= 1 << 3
	}
	p.send(func(m *pool.Message) error {
		opts := []message.Option{{ID: message.URIQuery, Value: []byte("token=" + secret)}}
		if tag != "" {
			opts = append(opts, message.Option{ID: 292, Value: []byte(tag)}) // Request-Tag (RFC 9175)
		}
		if err := m.SetupPost(path, tok, message.TextPlain, bytes.NewReader(body[num*size:end]), opts...); err != nil {
			return err
		}
		m.SetOptionUint32(message.Block1, v)
		return nil
	}, message.Confirmable)
	return p.recv()
}

// A client may give every block of a Block1 transfer a new token (RFC
// 7959 §2.3; libcoap does): the blocks are matched by session and
// request options, Request-Tag included, so two interleaved transfers
// of one device and a block from another peer do not mix.
func TestBlock1NewTokenPerBlock(t *testing.T) {
	s := start(t)
	secret := s.Device(t, "a")
	msgs := watch(t, s, "things/#")
	a := newRawPeer(t, s)
	intruder := newRawPeer(t, s)
	one := []byte(strings.Repeat("1", 40))
	two := []byte(strings.Repeat("2", 40))
	path := "/things/a/logs"
	cred := "a:" + secret
	tok := byte(0)
	step := func(p *rawPeer, tag string, body []byte, num int, want codes.Code) {
		t.Helper()
		tok++
		sent := []byte{tok, 0xAA}
		resp := p.block(path, cred, sent, tag, body, num)
		if resp.Code() != want || !bytes.Equal(resp.Token(), sent) {
			t.Fatalf("block %d of %q = %v token %x; want %v with the block's own token %x", num, tag, resp.Code(), resp.Token(), want, sent)
		}
	}
	step(a, "t1", one, 0, codes.Continue)
	step(a, "t2", two, 0, codes.Continue)
	step(a, "t1", one, 1, codes.Continue)
	step(a, "t2", two, 1, codes.Continue)
	// Another peer's last block with the same options is no part of a's
	// transfer: it is a request of its own.
	step(intruder, "t1", []byte(strings.Repeat("X", 40)), 2, codes.Changed)
	if m := next(t, msgs); strings.Contains(string(m.Payload), "1") {
		t.Fatalf("the intruder's request carried a's blocks: %q", m.Payload)
	}
	step(a, "t2", two, 2, codes.Changed)
	step(a, "t1", one, 2, codes.Changed)
	got := map[string]bool{}
	for range 2 {
		got[string(next(t, msgs).Payload)] = true
	}
	if !got[string(one)] || !got[string(two)] {
		t.Errorf("bus payloads = %v; want both 40-byte bodies whole", got)
	}
}

// Shadow notifications are non-confirmable: an observer that never
// acknowledges gets each change at once, and no retransmission.
func TestShadowNotificationsNonConfirmable(t *testing.T) {
	s := start(t)
	secret := s.Device(t, "a")
	p := newRawPeer(t, s)
	tok := []byte{9, 9}
	p.send(func(m *pool.Message) error {
		if err := m.SetupGet("/things/a/shadow", tok, message.Option{ID: message.URIQuery, Value: []byte("token=a:" + secret)}); err != nil {
			return err
		}
		m.SetObserve(0)
		return nil
	}, message.Confirmable)
	if r := p.recv(); r.Code() != codes.NotFound {
		t.Fatalf("registration = %v; want 4.04 (no shadow yet) with Observe", r.Code())
	} else if _, err := r.Observe(); err != nil {
		t.Fatalf("registration answer without Observe: %v", err)
	}
	for i, want := range []string{`"on":true`, `"on":false`} {
		if _, err := s.Shadows().Update(ctx(t), "a", "", []byte(`{"state":{"desired":{`+want+`}}}`)); err != nil {
			t.Fatal(err)
		}
		r := p.recv()
		if r.Type() != message.NonConfirmable || !bytes.Equal(r.Token(), tok) || !strings.Contains(body(t, r), want) {
			t.Fatalf("notification %d = %v %v token %x %q; want a non-confirmable 2.05 with %s", i, r.Type(), r.Code(), r.Token(), body(t, r), want)
		}
	}
	// A document over a block: its first block, non-confirmable, with
	// Block2 and Size2; the rest comes with GET and Block2 (RFC 7959
	// §2.6), here with a new token.
	note := strings.Repeat("n", 2000)
	if _, err := s.Shadows().Update(ctx(t), "a", "", []byte(`{"state":{"reported":{"note":"`+note+`"}}}`)); err != nil {
		t.Fatal(err)
	}
	r := p.recv()
	b2, berr := r.GetOptionUint32(message.Block2)
	size, serr := r.GetOptionUint32(message.Size2)
	first := body(t, r)
	if r.Type() != message.NonConfirmable || berr != nil || b2 != 1<<3|6 || serr != nil || len(first) != 1024 {
		t.Fatalf("large notification = %v Block2 %v (%v) Size2 %v (%v), %d bytes; want non-confirmable, Block2 0/more/1024, Size2, 1024 bytes", r.Type(), b2, berr, size, serr, len(first))
	}
	doc := first
	for num := uint32(1); ; num++ {
		p.send(func(m *pool.Message) error {
			if err := m.SetupGet("/things/a/shadow", []byte{7, byte(num)}, message.Option{ID: message.URIQuery, Value: []byte("token=a:" + secret)}); err != nil {
				return err
			}
			m.SetOptionUint32(message.Block2, num<<4|6)
			return nil
		}, message.Confirmable)
		r := p.recv()
		if r.Code() != codes.Content {
			t.Fatalf("block %d = %v; want 2.05", num, r.Code())
		}
		doc += body(t, r)
		v, err := r.GetOptionUint32(message.Block2)
		if err != nil || v&(1<<3) == 0 {
			break
		}
	}
	if len(doc) != int(size) || !strings.Contains(doc, note) {
		t.Errorf("large notification assembled = %d bytes; want Size2 %d with the whole note", len(doc), size)
	}
}
