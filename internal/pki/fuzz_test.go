package pki

import (
	"testing"

	"github.com/moteiot/mote/internal/core"
)

// More seeds are in testdata/fuzz.

func FuzzParseCSR(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		csr, err := parseCSR(in)
		if err != nil {
			if csr != nil || core.KindOf(err) != core.KindInvalid {
				t.Fatalf("parseCSR = %v, %v; want nil and a KindInvalid error", csr, err)
			}
			return
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("parseCSR accepted a CSR whose signature does not verify: %v", err)
		}
	})
}

func FuzzParseCertificatePEM(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		cert, err := ParseCertificatePEM(in)
		if err != nil {
			if cert != nil || core.KindOf(err) != core.KindInvalid {
				t.Fatalf("ParseCertificatePEM = %v, %v; want nil and a KindInvalid error", cert, err)
			}
			return
		}
		if len(Fingerprint(cert)) != 64 {
			t.Fatalf("Fingerprint(cert) = %q; want 64 hex digits", Fingerprint(cert))
		}
	})
}
