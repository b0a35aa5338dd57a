package httpapi

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/shadow"
)

// shadowInfo is one item of GET /things/{name}/shadows.
type shadowInfo struct {
	Name      string    `json:"name"` // "classic" for the classic shadow
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// shadowKinds names the problem kind of a shadow error code.
var shadowKinds = map[int]string{
	400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict",
	413: "too_large", 415: "unsupported_media_type", 429: "rate_limited", 503: "unavailable",
}

// shadowError turns a *shadow.Error into a problem with the same status
// (the AWS code); a 500 becomes an internal error with an error id.
func shadowError(err error) error {
	var se *shadow.Error
	if !errors.As(err, &se) {
		return err
	}
	kind, ok := shadowKinds[se.Code]
	if !ok {
		return errors.New("shadow: " + se.Message)
	}
	return &httpError{status: se.Code, kind: kind, msg: se.Message}
}

// shadowTarget checks the thing (it must exist) and the shadow name of a
// shadow route; "classic" is the classic shadow (name "").
func (s *server) shadowTarget(r *http.Request, withShadow bool) (thing, name string, err error) {
	if s.shadows == nil {
		return "", "", core.Errorf(core.KindUnavailable, "device shadows are not enabled on this server")
	}
	if thing, err = pathName(r, "name"); err != nil {
		return "", "", err
	}
	if withShadow {
		name = r.PathValue("shadow")
		if name == shadow.ClassicName {
			name = ""
		} else if name == "" {
			return "", "", core.Invalid("shadow", "shadow name is required")
		} else if serr := shadow.ValidateName(name); serr != nil {
			return "", "", core.Invalid("shadow", "%s", serr.Message)
		}
	}
	if _, err := s.reg.GetThing(r.Context(), thing); err != nil {
		return "", "", err
	}
	return thing, name, nil
}

func (s *server) listShadows(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	thing, _, err := s.shadowTarget(r, false)
	if err != nil {
		return err
	}
	list, err := s.shadows.List(r.Context(), thing)
	if err != nil {
		return err
	}
	items := make([]shadowInfo, 0, len(list))
	for _, si := range list {
		n := si.Name
		if n == "" {
			n = shadow.ClassicName
		}
		items = append(items, shadowInfo{Name: n, Version: si.Version, UpdatedAt: si.UpdatedAt})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	if limit == 0 {
		limit = 100
	}
	i := sort.Search(len(items), func(i int) bool { return items[i].Name > after })
	items = items[i:]
	next := ""
	if len(items) > limit {
		items = items[:limit]
		next = items[limit-1].Name
	}
	return writeJSON(w, http.StatusOK, newList(items, next))
}

func (s *server) getShadow(w http.ResponseWriter, r *http.Request) error {
	return s.adminShadow(w, r, s.shadowGet)
}

func (s *server) updateShadow(w http.ResponseWriter, r *http.Request) error {
	return s.adminShadow(w, r, s.shadowUpdate)
}

func (s *server) deleteShadow(w http.ResponseWriter, r *http.Request) error {
	return s.adminShadow(w, r, s.shadowDelete)
}

// shadowOp is one operation on a shadow, shared by the REST routes and the
// HTTP device API (devices.go), which differ only in how they find and
// authorize the thing and the shadow.
type shadowOp func(w http.ResponseWriter, r *http.Request, thing, name string) error

// adminShadow runs op for /things/{name}/shadows/{shadow}.
func (s *server) adminShadow(w http.ResponseWriter, r *http.Request, op shadowOp) error {
	if err := noParams(r); err != nil {
		return err
	}
	thing, name, err := s.shadowTarget(r, true)
	if err != nil {
		return err
	}
	return op(w, r, thing, name)
}

func (s *server) shadowGet(w http.ResponseWriter, r *http.Request, thing, name string) error {
	body, err := s.shadows.Get(r.Context(), thing, name)
	if err != nil {
		return shadowError(err)
	}
	return writeRawJSON(w, http.StatusOK, body)
}

func (s *server) shadowUpdate(w http.ResponseWriter, r *http.Request, thing, name string) error {
	body, err := readJSONBody(w, r)
	if err != nil {
		return err
	}
	if err := s.checkDesired(r.Context(), thing, name, body); err != nil {
		return err
	}
	out, err := s.shadows.Update(r.Context(), thing, name, body)
	if err != nil {
		return shadowError(err)
	}
	return writeRawJSON(w, http.StatusOK, out)
}

func (s *server) shadowDelete(w http.ResponseWriter, r *http.Request, thing, name string) error {
	out, err := s.shadows.Delete(r.Context(), thing, name)
	if err != nil {
		return shadowError(err)
	}
	return writeRawJSON(w, http.StatusOK, out)
}

// readJSONBody reads a required JSON body as it is: at most MaxBodyBytes
// (413), Content-Type application/json (415), not empty (400).
func readJSONBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, errTooLarge(MaxBodyBytes)
		}
		return nil, core.Invalid("", "reading the request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, core.Invalid("", "a JSON request body is required")
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || !isJSONType(mt) {
		return nil, errUnsupportedMediaType(ct)
	}
	return body, nil
}

// writeRawJSON sends a JSON body that is already encoded.
func writeRawJSON(w http.ResponseWriter, status int, body []byte) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(body)
	w.Write([]byte{'\n'})
	return nil
}
