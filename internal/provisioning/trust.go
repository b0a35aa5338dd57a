package provisioning

import (
	"crypto/tls"
	"crypto/x509"
	"sync"
	"sync/atomic"
)

// Trust is the TLS side of X.509 enrollment: the server's listeners ask
// for a client certificate from Mote's CA or from any verified enrollment
// CA. The handshake itself does not verify it (tls.RequestClientCert):
// the authenticators do — auth.Devices against Mote's CA, the provisioning
// service against the group CAs — so a foreign, expired or unregistered
// certificate is answered with a CONNACK reason code or HTTP 401 that
// says why, instead of a TLS alert. Made before the listeners; the
// service updates it when a CA is verified, disabled or deleted.
type Trust struct {
	base *tls.Config
	mu   sync.Mutex
	cfg  atomic.Pointer[tls.Config]
}

// NewTrust wraps base (Certificates, ClientCAs = Mote's CA, MinVersion).
func NewTrust(base *tls.Config) *Trust {
	t := &Trust{base: base.Clone()}
	t.set(nil)
	return t
}

// Config returns the listeners' configuration: base, whose handshakes use
// the current set of CAs.
func (t *Trust) Config() *tls.Config {
	c := t.base.Clone()
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return t.cfg.Load(), nil }
	return c
}

// set installs the verified group CAs.
func (t *Trust) set(cas []*x509.Certificate) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.base.Clone()
	pool := x509.NewCertPool()
	if t.base.ClientCAs != nil {
		pool = t.base.ClientCAs.Clone()
	}
	for _, ca := range cas {
		pool.AddCert(ca)
	}
	c.ClientCAs = pool
	c.ClientAuth = tls.RequestClientCert
	t.cfg.Store(c)
}
