package registry

import (
	"context"
	"math/big"
	"sync"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/pki"
)

// DefaultCRLValidity is the default of --crl-validity.
const DefaultCRLValidity = 24 * time.Hour

// crlCache keeps the last CRL built. It is built again when a
// credential is revoked or deleted (invalidate) and when half of its
// validity has passed, never per request.
type crlCache struct {
	validity time.Duration

	mu     sync.Mutex
	pem    []byte
	built  time.Time
	number *big.Int // the last CRL number handed out
	stale  bool
}

func (c *crlCache) invalidate() {
	c.mu.Lock()
	c.stale = true
	c.mu.Unlock()
}

// CRL returns Mote's certificate revocation list (PEM), signed by its CA:
// the serial numbers of every revoked certificate that has not expired
// yet. Its CRL number is the build time in milliseconds, so it grows
// across restarts without being stored.
func (r *Registry) CRL(ctx context.Context) ([]byte, error) {
	c := &r.crl
	c.mu.Lock()
	defer c.mu.Unlock()
	now := r.now()
	if c.pem != nil && !c.stale && now.Sub(c.built) < c.validity/2 {
		return c.pem, nil
	}
	creds, err := r.st.Credentials().ListRevokedCertificates(ctx)
	if err != nil {
		return nil, err
	}
	revoked := make([]pki.RevokedCert, 0, len(creds))
	for _, cr := range creds {
		cert, err := pki.ParseCertificatePEM([]byte(cr.CertPEM))
		if err != nil {
			r.log.Warn("CRL: skipping a revoked credential whose certificate does not parse", "credential", cr.ID, "error", err)
			continue
		}
		if !cert.NotAfter.After(now) {
			continue // expired: no verifier accepts it anyway (RFC 5280 5.1.2.6)
		}
		at := now
		if cr.RevokedAt != nil {
			at = *cr.RevokedAt
		}
		revoked = append(revoked, pki.RevokedCert{Serial: cert.SerialNumber, RevokedAt: at})
	}
	number := big.NewInt(now.UnixMilli())
	if c.number != nil && number.Cmp(c.number) <= 0 {
		number.Add(c.number, big.NewInt(1))
	}
	b, err := r.ca.CreateCRL(revoked, number, now, now.Add(c.validity))
	if err != nil {
		return nil, core.Errorf(core.KindUnavailable, "cannot sign a CRL with this CA: %v", err)
	}
	c.pem, c.built, c.number, c.stale = b, now, number, false
	return b, nil
}
