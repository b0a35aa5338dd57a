package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/methods"
)

// methodRequest is the body of POST /things/{name}/methods/{method}.
type methodRequest struct {
	Payload        json.RawMessage `json:"payload"`
	TimeoutSeconds *int            `json:"timeoutSeconds"`
}

// invokeMethod is POST /things/{name}/methods/{method}: a direct method
// call that waits for the device's answer. 404 when the thing does not
// exist or is not connected, 504 when it does not answer in time.
func (s *server) invokeMethod(w http.ResponseWriter, r *http.Request) error {
	if s.methods == nil {
		return core.Errorf(core.KindUnavailable, "direct methods are not enabled on this server")
	}
	if err := noParams(r); err != nil {
		return err
	}
	thing, err := pathName(r, "name")
	if err != nil {
		return err
	}
	method := r.PathValue("method")
	if err := methods.ValidateMethod(method); err != nil {
		return err
	}
	var req methodRequest
	if err := decodeOptionalJSON(w, r, &req); err != nil {
		return err
	}
	var timeout time.Duration
	if req.TimeoutSeconds != nil {
		n := *req.TimeoutSeconds
		if n < int(methods.MinTimeout/time.Second) || n > int(methods.MaxTimeout/time.Second) {
			_, err := methods.ValidateTimeout(-1)
			return err
		}
		timeout = time.Duration(n) * time.Second
	}
	if _, err := s.reg.GetThing(r.Context(), thing); err != nil {
		return err
	}
	resp, err := s.methods.Invoke(r.Context(), thing, method, req.Payload, timeout)
	if errors.Is(err, methods.ErrTimeout) {
		return &httpError{status: http.StatusGatewayTimeout, kind: "timeout", msg: messageOf(err)}
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}

// messageOf returns the caller-safe message of a *core.Error.
func messageOf(err error) string {
	if ce, ok := errors.AsType[*core.Error](err); ok {
		return ce.Msg
	}
	return err.Error()
}
