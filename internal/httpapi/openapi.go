package httpapi

import (
	"github.com/moteiot/mote/internal/core"

	_ "embed"
	"net/http"
)

// openAPIDoc is the hand-written OpenAPI 3.1 description of this API.
// TestOpenAPIMatchesRoutes keeps it in step with the route table.
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPIDocument returns openapi.json (for tests that check responses
// against it: internal/httpapi/openapitest). The caller must not modify it.
func OpenAPIDocument() []byte { return openAPIDoc }

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

// ServerInfo is what GET /server reports: the version and where devices
// connect. Addresses are host:port as bound (a wildcard host means every
// interface).
type ServerInfo struct {
	Version   string `json:"version"`
	MQTT      string `json:"mqtt,omitempty"`
	MQTTS     string `json:"mqtts,omitempty"`
	WebSocket string `json:"websocket"` // path on the HTTP port
	// MapTileURL is the console map's tile URL template ("" none).
	MapTileURL string `json:"mapTileURL"`
}

func (s *server) getServer(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	info := ServerInfo{Version: core.Version, WebSocket: "/mqtt"}
	if s.info != nil {
		info = s.info()
	}
	return writeJSON(w, http.StatusOK, info)
}
