package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/files"
	"github.com/moteiot/mote/internal/store"
)

// Files uploaded by devices (docs/files.md): PUT, HEAD and GET of the
// upload status on the HTTP device API; list, metadata, download and
// delete for applications.

type fileUpload struct {
	Received int64  `json:"received"`
	Total    *int64 `json:"total"` // null: not declared yet
}

type fileJSON struct {
	Thing       string      `json:"thing"`
	Name        string      `json:"name"`
	ContentType string      `json:"contentType"`
	Complete    bool        `json:"complete"` // a complete version exists
	Size        int64       `json:"size"`
	SHA256      string      `json:"sha256,omitempty"`
	Upload      *fileUpload `json:"upload,omitempty"` // an upload in progress
	CreatedAt   time.Time   `json:"createdAt"`
	UpdatedAt   time.Time   `json:"updatedAt"`
}

type fileList struct {
	Items []fileJSON `json:"items"`
}

func fileOut(f store.File) fileJSON {
	out := fileJSON{Thing: f.Thing, Name: f.Name, ContentType: f.ContentType, Complete: f.Complete, Size: f.Size,
		SHA256: f.SHA256, CreatedAt: f.CreatedAt, UpdatedAt: f.UpdatedAt}
	if f.UploadID != "" {
		out.Upload = &fileUpload{Received: f.Received}
		if f.Total >= 0 {
			t := f.Total
			out.Upload.Total = &t
		}
	}
	return out
}

func (s *server) needFiles() error {
	if s.files == nil {
		return core.Errorf(core.KindUnavailable, "device files are not enabled on this server")
	}
	return nil
}

// fileName returns the {file} path segment; a malformed one is a 404.
func fileName(r *http.Request, param string) (string, error) {
	n := r.PathValue(param)
	if files.ValidateName(n) != nil {
		return "", core.NotFound("file", n)
	}
	return n, nil
}

// setUploadOffset tells a device how many bytes of its upload in progress
// the server has (tus-style Upload-Offset).
func setUploadOffset(w http.ResponseWriter, f store.File) {
	if f.UploadID != "" {
		w.Header().Set("Upload-Offset", strconv.FormatInt(f.Received, 10))
	} else {
		w.Header().Set("Upload-Offset", "0")
	}
	if f.Complete {
		w.Header().Set("X-Mote-SHA256", f.SHA256)
	}
}

// devicePutFile stores one piece of a device's file: the whole file, or
// with Content-Range a piece of a resumable upload. 201 with the file
// once complete; 202 while pieces are missing; a body cut short keeps
// what arrived and answers with the problem and Upload-Offset.
func (s *server) devicePutFile(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	if err := s.needFiles(); err != nil {
		return err
	}
	thing := deviceIdentity(r).Thing
	name, err := fileName(r, "name")
	if err != nil {
		return core.Invalid("name", "file name must be 1 to 128 of [A-Za-z0-9_.:-], not starting with '.' or '-'")
	}
	u := files.Upload{Thing: thing, Name: name, ContentType: r.Header.Get("Content-Type"), Length: r.ContentLength}
	if cr := r.Header.Get("Content-Range"); cr != "" {
		c, err := files.ParseContentRange(cr)
		if err != nil {
			return err
		}
		u.Range = &c
	}
	s.extendUploadDeadline(w, r)
	f, err := s.files.Put(r.Context(), u, r.Body)
	if err != nil {
		var ue *files.UploadError
		if errors.As(err, &ue) {
			setUploadOffset(w, ue.File)
			return core.Errorf(core.KindInvalid, "the upload was cut short: %d bytes are kept; continue with Content-Range: bytes %d-", ue.File.Received, ue.File.Received)
		}
		if core.KindOf(err) == core.KindConflict {
			if cur, gerr := s.files.Get(r.Context(), thing, name); gerr == nil {
				setUploadOffset(w, cur)
			}
		}
		return err
	}
	setUploadOffset(w, f)
	if !f.Complete || f.UploadID != "" {
		return writeJSON(w, http.StatusAccepted, fileOut(f))
	}
	return created(w, "/things/"+thing+"/files/"+name, fileOut(f))
}

// deviceGetFile tells a device the state of its file (HEAD: headers
// only): how much of an upload in progress the server has.
func (s *server) deviceGetFile(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	if err := s.needFiles(); err != nil {
		return err
	}
	name, err := fileName(r, "name")
	if err != nil {
		return err
	}
	f, err := s.files.Get(r.Context(), deviceIdentity(r).Thing, name)
	if err != nil {
		return err
	}
	setUploadOffset(w, f)
	return writeJSON(w, http.StatusOK, fileOut(f))
}

// thingFile returns the {name} thing's {file}: 404 for a missing thing
// or file.
func (s *server) thingFile(r *http.Request) (store.File, error) {
	if err := s.needFiles(); err != nil {
		return store.File{}, err
	}
	thing, err := nameParam(r, "thing")
	if err != nil {
		return store.File{}, err
	}
	name, err := fileName(r, "file")
	if err != nil {
		return store.File{}, err
	}
	return s.files.Get(r.Context(), thing, name)
}

func (s *server) listFiles(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	if err := s.needFiles(); err != nil {
		return err
	}
	thing, err := nameParam(r, "thing")
	if err != nil {
		return err
	}
	if _, err := s.reg.GetThing(r.Context(), thing); err != nil {
		return err
	}
	list, err := s.files.List(r.Context(), thing)
	if err != nil {
		return err
	}
	out := fileList{Items: make([]fileJSON, len(list))}
	for i, f := range list {
		out.Items[i] = fileOut(f)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *server) getFile(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	f, err := s.thingFile(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, fileOut(f))
}

func (s *server) downloadFile(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	f, err := s.thingFile(r)
	if err != nil {
		return err
	}
	c, err := s.files.Open(r.Context(), f)
	if err != nil {
		return err
	}
	defer c.Close()
	h := w.Header()
	h.Set("Content-Type", f.ContentType)
	h.Set("ETag", `"`+f.SHA256+`"`)
	h.Set("X-Mote-SHA256", f.SHA256)
	h.Set("Content-Disposition", `attachment; filename="`+f.Name+`"`)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "private, no-store")
	// Device content is never rendered by the browser on our origin.
	h.Set("Content-Security-Policy", "sandbox")
	http.ServeContent(w, r, "", f.UpdatedAt, c)
	return nil
}

func (s *server) deleteFile(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	f, err := s.thingFile(r)
	if err != nil {
		return err
	}
	if err := s.files.Delete(r.Context(), f.Thing, f.Name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
