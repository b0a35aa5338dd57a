package broker

import (
	"net"
	"sync"
)

// corkConn is a client connection whose writes can be held back for a
// moment and sent in one write: when the fsync of a group commit releases
// many durable publishes of one client at once, their PUBACKs (mochi
// writes each packet with its own write call) leave in one system call
// instead of one each (durable.go). Uncorked, a write goes straight
// through. All writes take the connection's mutex, so bytes never
// overtake ones held back.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    []byte
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// cork starts holding writes back.
func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork sends what was held back, in one write, and lets writes through
// again.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 64<<10 {
		c.buf = nil // do not keep a large buffer for an idle connection
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// underlying returns the connection a client came on, unwrapped.
func underlying(c net.Conn) net.Conn {
	if cc, ok := c.(*corkConn); ok {
		c = cc.Conn
	}
	if lc, ok := c.(*lingerConn); ok {
		return lc.Conn
	}
	return c
}
