package pki

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// RevokedCert is one entry of a certificate revocation list.
type RevokedCert struct {
	Serial    *big.Int
	RevokedAt time.Time
}

// CreateCRL signs a PEM X.509 certificate revocation list (RFC 5280) of
// the given certificates with the CA's key: number is its CRL number
// (it must grow from one CRL to the next), valid from thisUpdate until
// nextUpdate. A CA certificate without the CRL-signing key usage cannot
// sign one (an operator-supplied CA may lack it).
func (ca *CA) CreateCRL(revoked []RevokedCert, number *big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, r := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: r.Serial, RevocationTime: r.RevokedAt.UTC()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                thisUpdate.UTC(),
		NextUpdate:                nextUpdate.UTC(),
		RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		return nil, fmt.Errorf("create CRL: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), nil
}
