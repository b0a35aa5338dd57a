package coap

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// Block1 transfers whose blocks carry different tokens.
//
// RFC 7959 §2.3 lets a client send each block of a Block1 transfer with
// a new token; the server matches the blocks by endpoint and request
// options (all but Block1/Size1 and Block2/Size2), which include the
// Request-Tag of RFC 9175. libcoap does exactly this (its "stateless"
// tokens count up per block, and it adds a Request-Tag). go-coap's
// block-wise layer assembles a transfer by token only, so without help
// every block after the first starts a new, one-block request and the
// handler sees only the last block.
//
// block1Tags remembers, per session, the token of the first block of
// each transfer under the hash of its matching options, and precheck
// gives the later blocks that token before go-coap sees them (the answer
// goes back with the block's own token). A session tracks at most max
// transfers (--coap-max-blockwise-transfers; a new one evicts the
// oldest, which then falls back to matching by token) for at most the
// block-wise transfer timeout after its last block.
type block1Tags struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	evicted func() // counts an eviction
	now     func() time.Time
	by      map[*udpclient.Conn][]block1Transfer
}

type block1Transfer struct {
	key     [sha256.Size]byte
	token   []byte
	expires time.Time
}

func newBlock1Tags(ttl time.Duration, max int, evicted func()) *block1Tags {
	return &block1Tags{ttl: ttl, max: max, evicted: evicted, now: time.Now, by: map[*udpclient.Conn][]block1Transfer{}}
}

// block1Key hashes what identifies a transfer: the method and every
// option but the block and size options (Uri-*, Content-Format,
// Request-Tag, ...).
func block1Key(r *pool.Message) [sha256.Size]byte {
	h := sha256.New()
	var b [6]byte
	binary.BigEndian.PutUint16(b[:2], uint16(r.Code()))
	h.Write(b[:2])
	for _, o := range r.Options() {
		switch o.ID {
		case message.Block1, message.Block2, message.Size1, message.Size2:
			continue
		}
		binary.BigEndian.PutUint16(b[:2], uint16(o.ID))
		binary.BigEndian.PutUint32(b[2:], uint32(len(o.Value)))
		h.Write(b[:])
		h.Write(o.Value)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// canonical returns the token go-coap must see for a block of a Block1
// request: the first block's token for a later block of a transfer it
// tracks, else the request's own. It records first blocks and forgets a
// transfer at its last block.
func (t *block1Tags) canonical(cc *udpclient.Conn, r *pool.Message) []byte {
	if r.Code() != codes.POST && r.Code() != codes.PUT {
		return r.Token()
	}
	v, err := r.GetOptionUint32(message.Block1)
	if err != nil {
		return r.Token()
	}
	_, num, more, err := blockwise.DecodeBlockOption(v)
	if err != nil {
		return r.Token()
	}
	key := block1Key(r)
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.by[cc]
	// Drop expired transfers and find this one.
	found := -1
	live := list[:0]
	for _, e := range list {
		if now.After(e.expires) {
			continue
		}
		if e.key == key {
			found = len(live)
		}
		live = append(live, e)
	}
	list = live
	token := r.Token()
	switch {
	case num == 0:
		if found >= 0 {
			list = append(list[:found], list[found+1:]...)
		}
		if more {
			if len(list) >= t.max {
				list = list[1:]
				t.evicted()
			}
			list = append(list, block1Transfer{key: key, token: bytes.Clone(token), expires: now.Add(t.ttl)})
		}
	case found >= 0:
		token = list[found].token
		if more {
			list[found].expires = now.Add(t.ttl)
		} else {
			list = append(list[:found], list[found+1:]...)
		}
	}
	if len(list) == 0 {
		delete(t.by, cc)
	} else {
		t.by[cc] = list
	}
	return token
}

// forget drops a transfer (refused) or all of a session's (closed).
func (t *block1Tags) forget(cc *udpclient.Conn, r *pool.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r == nil {
		delete(t.by, cc)
		return
	}
	key := block1Key(r)
	list := t.by[cc]
	for i, e := range list {
		if e.key == key {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(t.by, cc)
	} else {
		t.by[cc] = list
	}
}

// transfers is how many Block1 transfers are tracked (for tests).
func (t *block1Tags) transfers() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, l := range t.by {
		n += len(l)
	}
	return n
}
