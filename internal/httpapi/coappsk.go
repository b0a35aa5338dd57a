package httpapi

import (
	"context"
	"encoding/hex"
	"net/http"

	"github.com/moteiot/mote/internal/core"
)

// pskSource derives the CoAP DTLS pre-shared key of a secret credential
// (*auth.Devices; docs/coap.md, DTLS-PSK).
type pskSource interface {
	CredentialPSK(ctx context.Context, thing, id string) ([]byte, error)
}

// credentialPSK is the body of GET /things/{name}/credentials/{id}/psk.
type credentialPSK struct {
	Identity string `json:"identity"` // the PSK identity: the thing name
	PSK      string `json:"psk"`      // hex
}

// getCredentialPSK is GET /things/{name}/credentials/{id}/psk (admin): the
// DTLS-PSK a device uses on the CoAPS port with this secret credential.
func (s *server) getCredentialPSK(w http.ResponseWriter, r *http.Request) error {
	thing, id, err := credentialParams(r)
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	src, ok := s.devices.(pskSource)
	if !ok {
		return core.Errorf(core.KindUnavailable, "CoAP PSKs are not available on this server")
	}
	if _, err := s.reg.GetCredential(r.Context(), thing, id); err != nil {
		return err
	}
	key, err := src.CredentialPSK(r.Context(), thing, id)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, credentialPSK{Identity: thing, PSK: hex.EncodeToString(key)})
}
