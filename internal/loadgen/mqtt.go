package loadgen

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// A minimal MQTT 3.1.1 client: only what the scenarios need, so that the
// generator's own CPU per message stays small (one reader goroutine per
// connection, no per-message allocation, batched PUBACKs).

const (
	pktConnect   = 1
	pktConnack   = 2
	pktPublish   = 3
	pktPuback    = 4
	pktSubscribe = 8
	pktSuback    = 9
)

// ConnackError is a CONNACK with a non-zero return code.
type ConnackError struct{ Code byte }

func (e *ConnackError) Error() string {
	return fmt.Sprintf("connection refused: CONNACK return code %d", e.Code)
}

// maxPacket bounds what a broker can make the client allocate: the
// largest payload (--size) plus a long topic.
const maxPacket = maxSize + 64<<10

type conn struct {
	nc net.Conn
	br *bufio.Reader
	// body is the reusable buffer readPacket returns slices of.
	body []byte
}

// dial opens a connection to the broker address number n (of the
// comma-separated Options.Addr, modulo their count) and completes
// CONNECT/CONNACK within timeout.
func dial(ctx context.Context, o *Options, n int, clientID string) (*conn, error) {
	addr := o.addr(n)
	d := net.Dialer{Timeout: o.DialTimeout}
	ctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	var nc net.Conn
	var err error
	if o.TLS != nil {
		td := tls.Dialer{NetDialer: &d, Config: o.TLS}
		nc, err = td.DialContext(ctx, "tcp", addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, 32<<10)}
	_ = nc.SetDeadline(time.Now().Add(o.DialTimeout))
	if _, err := nc.Write(connectPacket(clientID, o.Username, o.Password, o.Keepalive)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect %s: write CONNECT: %w", clientID, err)
	}
	typ, _, body, err := c.readPacket()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect %s: read CONNACK: %w", clientID, err)
	}
	if typ != pktConnack || len(body) < 2 {
		nc.Close()
		return nil, fmt.Errorf("connect %s: want CONNACK, got packet type %d", clientID, typ)
	}
	if body[1] != 0 {
		nc.Close()
		return nil, fmt.Errorf("connect %s: %w", clientID, &ConnackError{Code: body[1]})
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// subscribe subscribes to one filter and waits for the SUBACK.
func (c *conn) subscribe(filter string, qos byte, timeout time.Duration) error {
	_ = c.nc.SetDeadline(time.Now().Add(timeout))
	defer c.nc.SetDeadline(time.Time{})
	b := make([]byte, 0, 16+len(filter))
	rem := 2 + 2 + len(filter) + 1
	b = append(b, pktSubscribe<<4|2)
	b = appendVarint(b, rem)
	b = append(b, 0, 1)
	b = appendString(b, filter)
	b = append(b, qos)
	if _, err := c.nc.Write(b); err != nil {
		return fmt.Errorf("subscribe %s: write: %w", filter, err)
	}
	typ, _, body, err := c.readPacket()
	if err != nil {
		return fmt.Errorf("subscribe %s: read SUBACK: %w", filter, err)
	}
	if typ != pktSuback || len(body) < 3 {
		return fmt.Errorf("subscribe %s: want SUBACK, got packet type %d", filter, typ)
	}
	if body[2] == 0x80 {
		return fmt.Errorf("subscribe %s: refused by the broker (SUBACK 0x80)", filter)
	}
	return nil
}

// readPacket reads one packet; body is valid until the next call.
func (c *conn) readPacket() (typ, flags byte, body []byte, err error) {
	h, err := c.br.ReadByte()
	if err != nil {
		return 0, 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		b, err := c.br.ReadByte()
		if err != nil {
			return 0, 0, nil, err
		}
		n += int(b&0x7f) * mul
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, 0, nil, errors.New("malformed remaining length")
		}
		mul *= 128
	}
	if n > maxPacket {
		return 0, 0, nil, fmt.Errorf("packet of %d bytes: more than the %d this client reads", n, maxPacket)
	}
	if cap(c.body) < n {
		c.body = make([]byte, n)
	}
	body = c.body[:n]
	if _, err := io.ReadFull(c.br, body); err != nil {
		return 0, 0, nil, err
	}
	return h >> 4, h & 0x0f, body, nil
}

func connectPacket(clientID, user, pass string, keepalive uint16) []byte {
	flags := byte(0x02) // clean session
	rem := 10 + 2 + len(clientID)
	if user != "" {
		flags |= 0x80
		rem += 2 + len(user)
	}
	if pass != "" {
		flags |= 0x40
		rem += 2 + len(pass)
	}
	b := make([]byte, 0, rem+5)
	b = append(b, pktConnect<<4)
	b = appendVarint(b, rem)
	b = appendString(b, "MQTT")
	b = append(b, 4, flags)
	b = binary.BigEndian.AppendUint16(b, keepalive)
	b = appendString(b, clientID)
	if user != "" {
		b = appendString(b, user)
	}
	if pass != "" {
		b = appendString(b, pass)
	}
	return b
}

// publishTemplate builds a PUBLISH packet for topic with a payload of
// size bytes and returns it with the offsets of the packet id (-1 for
// QoS 0) and of the payload.
func publishTemplate(topic string, qos byte, size int) (pkt []byte, pidOff, payOff int) {
	rem := 2 + len(topic) + size
	if qos > 0 {
		rem += 2
	}
	pkt = append(pkt, pktPublish<<4|qos<<1)
	pkt = appendVarint(pkt, rem)
	pkt = appendString(pkt, topic)
	pidOff = -1
	if qos > 0 {
		pidOff = len(pkt)
		pkt = append(pkt, 0, 0)
	}
	payOff = len(pkt)
	pkt = append(pkt, make([]byte, size)...)
	return pkt, pidOff, payOff
}

func appendVarint(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}
