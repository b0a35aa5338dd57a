package httpapi

import (
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/moteiot/mote/internal/certrotate"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
)

// maxValidityDays is the longest certificate validity the registry accepts.
const maxValidityDays = int(registry.MaxCertValidity / (24 * time.Hour))

// credentialJSON is a credential in an answer: what an operator may see
// of a store.Credential (never its secret hash or sealed key).
type credentialJSON struct {
	ID          string     `json:"id"`
	Thing       string     `json:"thing"`
	Type        string     `json:"type"`
	Fingerprint string     `json:"fingerprint,omitempty"`
	Certificate string     `json:"certificate,omitempty"`
	NotAfter    *time.Time `json:"notAfter,omitempty"`
	Revoked     bool       `json:"revoked"`
	RevokedAt   *time.Time `json:"revokedAt,omitempty"`
	CreatedAt   time.Time  `json:"createdAt"`
}

func toCredentialJSON(c store.Credential) credentialJSON {
	return credentialJSON{ID: c.ID, Thing: c.Thing, Type: c.Type, Fingerprint: c.Fingerprint, Certificate: c.CertPEM,
		NotAfter: c.NotAfter, Revoked: c.Revoked, RevokedAt: c.RevokedAt, CreatedAt: c.CreatedAt}
}

// newCredentialJSON is a credential just made, with the parts shown only
// once; Previous is the credential it replaces (a rotation).
type newCredentialJSON struct {
	credentialJSON
	Secret     string          `json:"secret,omitempty"`
	PrivateKey string          `json:"privateKey,omitempty"`
	Key        string          `json:"key,omitempty"`
	CACert     string          `json:"caCertificate,omitempty"`
	Previous   *credentialJSON `json:"previous,omitempty"`
}

func toNewCredentialJSON(nc registry.NewCredential) newCredentialJSON {
	return newCredentialJSON{credentialJSON: toCredentialJSON(nc.Credential), Secret: nc.Secret, PrivateKey: nc.PrivateKey, Key: nc.Key, CACert: nc.CACert}
}

// credentialCreate is the body of POST /things/{name}/credentials.
type credentialCreate struct {
	Type         string  `json:"type"`         // "secret", "x509" or "symmetricKey"
	ExpiresAt    *string `json:"expiresAt"`    // secret and symmetricKey only; RFC 3339
	ValidityDays *int    `json:"validityDays"` // x509 only; absent: 365
	CSR          *string `json:"csr"`          // x509 only; absent: the server makes the key pair
}

func (s *server) createCredential(w http.ResponseWriter, r *http.Request) error {
	thing, err := nameParam(r, "thing")
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	var in credentialCreate
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	ctx := r.Context()
	var nc registry.NewCredential
	switch in.Type {
	case store.CredentialSecret:
		if in.ValidityDays != nil {
			return core.Invalid("validityDays", "validityDays applies to x509 credentials only (a secret may have expiresAt)")
		}
		if in.CSR != nil {
			return core.Invalid("csr", "csr applies to x509 credentials only")
		}
		expires, err := parseTime("expiresAt", in.ExpiresAt)
		if err != nil {
			return err
		}
		nc, err = s.reg.CreateSecret(ctx, thing, expires)
		if err != nil {
			return err
		}
	case store.CredentialX509:
		if in.ExpiresAt != nil {
			return core.Invalid("expiresAt", "expiresAt applies to secret credentials only (a certificate has validityDays)")
		}
		var validity time.Duration
		if in.ValidityDays != nil {
			d := *in.ValidityDays
			if d < 1 || d > maxValidityDays {
				return core.Invalid("validityDays", "validityDays must be from 1 to %d", maxValidityDays)
			}
			validity = time.Duration(d) * 24 * time.Hour
		}
		if in.CSR != nil {
			if *in.CSR == "" {
				return core.Invalid("csr", "csr must be a PEM certificate request")
			}
			nc, err = s.reg.SignCSR(ctx, thing, []byte(*in.CSR), validity)
		} else {
			nc, err = s.reg.IssueCertificate(ctx, thing, validity)
		}
		if err != nil {
			return err
		}
	case store.CredentialSymmetricKey:
		if in.ValidityDays != nil || in.CSR != nil {
			return core.Invalid("type", "validityDays and csr apply to x509 credentials only")
		}
		expires, err := parseTime("expiresAt", in.ExpiresAt)
		if err != nil {
			return err
		}
		nc, err = s.reg.CreateSymmetricKey(ctx, thing, expires)
		if err != nil {
			return err
		}
	case "":
		return core.Invalid("type", "type is required: secret, x509 or symmetricKey")
	default:
		return core.Invalid("type", "type must be secret, x509 or symmetricKey")
	}
	return created(w, "/things/"+thing+"/credentials/"+nc.ID, toNewCredentialJSON(nc))
}

// credentialRotate is the body of POST /things/{name}/credentials/{id}/rotate.
type credentialRotate struct {
	Window       *string `json:"window"`       // Go duration; absent: --credential-rotation-window
	CSR          *string `json:"csr"`          // x509 only; absent: the server makes the key pair
	ValidityDays *int    `json:"validityDays"` // x509 only; absent: 365
}

// rotateCredential replaces a credential by a new one of its type; the
// old one stays valid for the rotation window (docs/credentials.md).
func (s *server) rotateCredential(w http.ResponseWriter, r *http.Request) error {
	thing, id, err := credentialParams(r)
	if err != nil {
		return err
	}
	var in credentialRotate
	if err := decodeOptionalJSON(w, r, &in); err != nil {
		return err
	}
	var rot registry.Rotation
	if in.Window != nil {
		d, err := time.ParseDuration(*in.Window)
		if err != nil || d < 0 {
			return core.Invalid("window", "window must be a duration such as 24h or 30m")
		}
		rot.Window = &d
	}
	if in.CSR != nil {
		if *in.CSR == "" {
			return core.Invalid("csr", "csr must be a PEM certificate request")
		}
		rot.CSR = []byte(*in.CSR)
	}
	if in.ValidityDays != nil {
		d := *in.ValidityDays
		if d < 1 || d > maxValidityDays {
			return core.Invalid("validityDays", "validityDays must be from 1 to %d", maxValidityDays)
		}
		rot.Validity = time.Duration(d) * 24 * time.Hour
	}
	nc, old, err := s.reg.RotateCredential(r.Context(), thing, id, rot)
	if err != nil {
		return err
	}
	out := toNewCredentialJSON(nc)
	prev := toCredentialJSON(old)
	out.Previous = &prev
	return created(w, "/things/"+thing+"/credentials/"+nc.ID, out)
}

// getCRL serves the CA's certificate revocation list (public, like the
// CA certificate): cached, signed again on revocation.
func (s *server) getCRL(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	b, err := s.reg.CRL(r.Context())
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-pem-file")
	h.Set("Content-Disposition", `attachment; filename="mote-crl.pem"`)
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
	return nil
}

func (s *server) listCredentials(w http.ResponseWriter, r *http.Request) error {
	thing, err := nameParam(r, "thing")
	if err != nil {
		return err
	}
	after, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	cs, err := s.reg.ListCredentials(r.Context(), thing)
	if err != nil {
		return err
	}
	cs, next, err := pageByCreation(cs, after, limit, func(c store.Credential) (time.Time, string) { return c.CreatedAt, c.ID })
	if err != nil {
		return err
	}
	items := make([]credentialJSON, len(cs))
	for i, c := range cs {
		items[i] = toCredentialJSON(c)
	}
	return writeJSON(w, http.StatusOK, newList(items, next))
}

func (s *server) getCredential(w http.ResponseWriter, r *http.Request) error {
	thing, id, err := credentialParams(r)
	if err != nil {
		return err
	}
	c, err := s.reg.GetCredential(r.Context(), thing, id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toCredentialJSON(c))
}

func (s *server) revokeCredential(w http.ResponseWriter, r *http.Request) error {
	thing, id, err := credentialParams(r)
	if err != nil {
		return err
	}
	// Revoking takes no input; tolerate an empty body or {} from clients
	// that always send one, but nothing else.
	var in struct{}
	if err := decodeOptionalJSON(w, r, &in); err != nil {
		return err
	}
	c, err := s.reg.RevokeCredential(r.Context(), thing, id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toCredentialJSON(c))
}

func (s *server) deleteCredential(w http.ResponseWriter, r *http.Request) error {
	thing, id, err := credentialParams(r)
	if err != nil {
		return err
	}
	if err := s.reg.DeleteCredential(r.Context(), thing, id); err != nil {
		return err
	}
	return noContent(w)
}

// credentialParams returns the thing name and credential id of a
// credential path, and rejects query parameters.
func credentialParams(r *http.Request) (thing, id string, err error) {
	if thing, err = nameParam(r, "thing"); err != nil {
		return "", "", err
	}
	if err := noParams(r); err != nil {
		return "", "", err
	}
	id = r.PathValue("id")
	if id == "" {
		return "", "", core.NotFound("credential", id)
	}
	return thing, id, nil
}

// deviceRotateCertificate is POST /devices/{thing}/certificate
// {"csr": PEM}: a device connected with its client certificate (HTTPS)
// rotates it (package certrotate); the old certificate stays valid for
// the rotation window.
func (s *server) deviceRotateCertificate(w http.ResponseWriter, r *http.Request) error {
	if s.certRotate == nil {
		return core.Errorf(core.KindUnavailable, "certificate rotation is not enabled on this server")
	}
	if err := noParams(r); err != nil {
		return err
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || !isJSONType(mt) {
			return errUnsupportedMediaType(ct)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, certrotate.MaxRequestSize))
	if err != nil {
		return errTooLarge(certrotate.MaxRequestSize)
	}
	a, err := s.certRotate.Rotate(r.Context(), deviceIdentity(r), r.PathValue("thing"), body, clientAddr(r), "http")
	if err != nil {
		if core.KindOf(err) == core.KindRateLimited {
			w.Header().Set("Retry-After", "600")
		}
		return err
	}
	return writeJSON(w, http.StatusCreated, a)
}
