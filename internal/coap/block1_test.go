package coap

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

func blockMsg(t *testing.T, tag string, tok byte, num int, more bool) *pool.Message {
	t.Helper()
	m := pool.NewMessage(context.Background())
	if err := m.SetupPost("/things/a/logs", []byte{tok}, message.TextPlain, bytes.NewReader([]byte("0123456789abcdef")),
		message.Option{ID: 292, Value: []byte(tag)}); err != nil {
		t.Fatal(err)
	}
	v := uint32(num << 4)
	if more {
		v |= 1 << 3
	}
	m.SetOptionUint32(message.Block1, v)
	return m
}

// A session tracks at most max transfers: a new one evicts the oldest
// (counted), whose later blocks then keep their own token; a transfer
// silent past the timeout is forgotten; a session's close forgets all.
func TestBlock1TagsBounded(t *testing.T) {
	evicted := 0
	clock := time.Unix(1000, 0)
	tags := newBlock1Tags(30*time.Second, 2, func() { evicted++ })
	tags.now = func() time.Time { return clock }
	cc, other := new(udpclient.Conn), new(udpclient.Conn)
	for i, tag := range []string{"x", "y", "z"} {
		tags.canonical(cc, blockMsg(t, tag, byte(10+i), 0, true))
	}
	if evicted != 1 || tags.transfers() != 2 {
		t.Fatalf("evicted %d, tracked %d; want 1, 2 (max 2)", evicted, tags.transfers())
	}
	if got := tags.canonical(cc, blockMsg(t, "x", 20, 1, true)); !bytes.Equal(got, []byte{20}) {
		t.Errorf("a block of the evicted transfer got token %x; want its own", got)
	}
	if got := tags.canonical(cc, blockMsg(t, "z", 21, 1, true)); !bytes.Equal(got, []byte{12}) {
		t.Errorf("a later block got token %x; want the first block's 0c", got)
	}
	// Another session's block with the same options is not matched.
	if got := tags.canonical(other, blockMsg(t, "z", 22, 2, false)); !bytes.Equal(got, []byte{22}) {
		t.Errorf("another session's block got token %x; want its own", got)
	}
	// The last block ends the transfer.
	if got := tags.canonical(cc, blockMsg(t, "z", 23, 2, false)); !bytes.Equal(got, []byte{12}) {
		t.Errorf("the last block got token %x; want 0c", got)
	}
	if tags.transfers() != 1 {
		t.Errorf("tracked %d after z ended; want 1 (y)", tags.transfers())
	}
	// A transfer silent past the timeout is forgotten.
	clock = clock.Add(29 * time.Second)
	if got := tags.canonical(cc, blockMsg(t, "y", 24, 1, true)); !bytes.Equal(got, []byte{11}) {
		t.Errorf("a block 29 s after the last got token %x; want 0b", got)
	}
	clock = clock.Add(31 * time.Second)
	if got := tags.canonical(cc, blockMsg(t, "y", 25, 2, true)); !bytes.Equal(got, []byte{25}) || tags.transfers() != 0 {
		t.Errorf("a block 31 s after the last got token %x (tracked %d); want its own, the transfer forgotten", got, tags.transfers())
	}
	tags.canonical(cc, blockMsg(t, "w", 30, 0, true))
	tags.forget(cc, nil)
	if tags.transfers() != 0 {
		t.Errorf("tracked %d after the session closed; want 0", tags.transfers())
	}
}
