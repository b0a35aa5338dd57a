package httpapi

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the hand-written OpenAPI 3.1 description of this API.
// TestOpenAPIMatchesRoutes keeps it in step with the route table.
//
//go:embed openapi.json
var openAPIDoc []byte

func (s *server) getOpenAPI(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	w.Write(openAPIDoc)
	return nil
}

func (s *server) getCACert(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	pem := s.reg.CACertPEM()
	h := w.Header()
	h.Set("Content-Type", "application/x-pem-file")
	h.Set("Content-Disposition", `attachment; filename="mote-ca.pem"`)
	h.Set("Cache-Control", "no-cache")
	w.Write(pem)
	return nil
}
