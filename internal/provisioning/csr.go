package provisioning

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"

	"github.com/moteiot/mote/internal/core"
)

// MaxCSRSize bounds a PEM certificate signing request.
const MaxCSRSize = 16 << 10

// ParseCSR parses and checks a device's PEM certificate signing request
// before anything is created: PEM CERTIFICATE REQUEST, a valid
// signature, a strong key (RSA of at least 2048 bits, ECDSA on P-256 or
// P-384, or Ed25519), and a subject common name that is empty or equals
// thing (when thing is not ""). It returns the common name asked for.
// Errors are core.KindInvalid with field "csr".
func ParseCSR(b []byte, thing string) (*x509.CertificateRequest, error) {
	if len(b) == 0 {
		return nil, core.Invalid("csr", "csr is required")
	}
	if len(b) > MaxCSRSize {
		return nil, core.Invalid("csr", "csr is larger than %d bytes", MaxCSRSize)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, core.Invalid("csr", "csr: no PEM data found")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, core.Invalid("csr", "csr: PEM block is %q, want \"CERTIFICATE REQUEST\"", block.Type)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, &core.Error{Kind: core.KindInvalid, Field: "csr", Msg: "csr: malformed certificate request", Err: err}
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, &core.Error{Kind: core.KindInvalid, Field: "csr", Msg: "csr: signature is invalid", Err: err}
	}
	switch k := csr.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, core.Invalid("csr", "csr: RSA key of %d bits is too weak, want at least 2048", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, core.Invalid("csr", "csr: EC key on %s is not accepted, want P-256 or P-384", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, core.Invalid("csr", "csr: unsupported public key type %T", k)
	}
	if thing != "" && csr.Subject.CommonName != "" && csr.Subject.CommonName != thing {
		return nil, core.Invalid("csr", "csr: subject common name %q must be the thing name %q or empty", csr.Subject.CommonName, thing)
	}
	return csr, nil
}
