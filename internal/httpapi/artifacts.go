package httpapi

import (
	"net/http"
	"time"

	"github.com/moteiot/mote/internal/artifacts"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Firmware artifacts (docs/artifacts.md): upload, list, get, delete,
// download by applications, devices and signed URLs, and the fleet's
// firmware distribution.

type artifactJSON struct {
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	ContentType string    `json:"contentType"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	Signed      bool      `json:"signed"`
	SigningKey  string    `json:"signingKey,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
}

func artifactOut(a store.Artifact) artifactJSON {
	return artifactJSON{Name: a.Name, Version: a.Version, ContentType: a.ContentType, Size: a.Size, SHA256: a.SHA256,
		Signed: a.Signature != "", SigningKey: a.SigningKey, CreatedAt: a.CreatedAt}
}

type artifactList struct {
	Items      []artifactJSON `json:"items"`
	NextCursor string         `json:"nextCursor,omitempty"`
}

type artifactURL struct {
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
	SHA256  string    `json:"sha256"`
	Size    int64     `json:"size"`
	Version string    `json:"version"`
}

type firmwareCount struct {
	Version string `json:"version"` // "": none reported
	Things  int    `json:"things"`
}

type firmwareDistribution struct {
	Key      string          `json:"key"`
	Versions []firmwareCount `json:"versions"`
}

func (s *server) needArtifacts() error {
	if s.artifacts == nil {
		return core.Errorf(core.KindUnavailable, "artifacts are not enabled on this server")
	}
	return nil
}

// extendUploadDeadline gives an upload with a declared length the body
// timeout plus its length at the minimum rate, instead of the body
// timeout alone.
func (s *server) extendUploadDeadline(w http.ResponseWriter, r *http.Request) {
	if s.uploadMinRate <= 0 || s.bodyTimeout <= 0 || r.ContentLength <= 0 {
		return
	}
	extra := time.Duration(float64(r.ContentLength) / float64(s.uploadMinRate) * float64(time.Second))
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.bodyTimeout + extra))
}

// createArtifact streams the request body into a new artifact. Metadata
// is in the query: name, version, sha256 (optional), signature
// (optional, base64); the content type is the request's Content-Type.
func (s *server) createArtifact(w http.ResponseWriter, r *http.Request) error {
	if err := s.needArtifacts(); err != nil {
		return err
	}
	q, err := parseQuery(r, "", "name", "version", "sha256", "signature")
	if err != nil {
		return err
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	s.extendUploadDeadline(w, r)
	a, err := s.artifacts.Create(r.Context(), artifacts.Upload{
		Name: q.vals["name"], Version: q.vals["version"], ContentType: ct,
		SHA256: q.vals["sha256"], Signature: q.vals["signature"],
	}, r.Body)
	if err != nil {
		return err
	}
	return created(w, "/artifacts/"+a.Name+"/"+a.Version, artifactOut(a))
}

func (s *server) listArtifacts(w http.ResponseWriter, r *http.Request) error {
	if err := s.needArtifacts(); err != nil {
		return err
	}
	q, err := parseQuery(r, "", "name", "limit", "cursor")
	if err != nil {
		return err
	}
	f := store.ArtifactFilter{Name: q.vals["name"], After: q.vals["cursor"]}
	if f.Limit, err = q.limit(); err != nil {
		return err
	}
	want := f.Limit
	if want == 0 {
		want = 100
	}
	f.Limit = want
	list, err := s.artifacts.List(r.Context(), f)
	if err != nil {
		return err
	}
	out := artifactList{Items: make([]artifactJSON, len(list))}
	for i, a := range list {
		out.Items[i] = artifactOut(a)
	}
	if len(list) == want {
		out.NextCursor = store.ArtifactCursor(list[len(list)-1])
	}
	return writeJSON(w, http.StatusOK, out)
}

// artifactParams returns the {name} and {version} of a route; a
// malformed one is a 404 (no such artifact can exist).
func artifactParams(r *http.Request) (string, string, error) {
	name, version := r.PathValue("name"), r.PathValue("version")
	if artifacts.ValidateName(name) != nil || (version != "latest" && artifacts.ValidateVersion(version) != nil) {
		return "", "", core.NotFound("artifact", name+"@"+version)
	}
	return name, version, nil
}

func (s *server) artifact(r *http.Request) (store.Artifact, error) {
	if err := s.needArtifacts(); err != nil {
		return store.Artifact{}, err
	}
	name, version, err := artifactParams(r)
	if err != nil {
		return store.Artifact{}, err
	}
	return s.artifacts.Get(r.Context(), name, version)
}

func (s *server) getArtifact(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	a, err := s.artifact(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, artifactOut(a))
}

func (s *server) deleteArtifact(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	if err := s.needArtifacts(); err != nil {
		return err
	}
	name, version, err := artifactParams(r)
	if err != nil {
		return err
	}
	if version == "latest" {
		return core.Invalid("version", `delete names a version, not "latest"`)
	}
	if err := s.artifacts.Delete(r.Context(), name, version); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// serveArtifact sends an artifact's content with Range support (an
// interrupted download resumes), its SHA-256 in a header and an ETag.
func (s *server) serveArtifact(w http.ResponseWriter, r *http.Request, a store.Artifact, via string) error {
	rs, err := s.artifacts.Open(r.Context(), a, via)
	if err != nil {
		return err
	}
	defer rs.Close()
	h := w.Header()
	h.Set("Content-Type", a.ContentType)
	h.Set("ETag", `"`+a.SHA256+`"`)
	h.Set("X-Mote-SHA256", a.SHA256)
	h.Set("Content-Disposition", `attachment; filename="`+a.Name+"-"+a.Version+`"`)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "private, no-transform")
	http.ServeContent(w, r, "", a.CreatedAt, rs)
	return nil
}

func (s *server) downloadArtifactAPI(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	a, err := s.artifact(r)
	if err != nil {
		return err
	}
	return s.serveArtifact(w, r, a, "api")
}

// downloadArtifactSigned is the public route of signed URLs: the exp and
// sig query parameters are the credentials.
func (s *server) downloadArtifactSigned(w http.ResponseWriter, r *http.Request) error {
	if err := s.needArtifacts(); err != nil {
		return err
	}
	q, err := parseQuery(r, "", "exp", "sig")
	if err != nil {
		return core.Errorf(core.KindForbidden, "signed URL: %v", err)
	}
	name, version := r.PathValue("name"), r.PathValue("version")
	if err := s.artifacts.VerifyURL(name, version, q.vals["exp"], q.vals["sig"]); err != nil {
		return err
	}
	a, err := s.artifact(r)
	if err != nil {
		return err
	}
	return s.serveArtifact(w, r, a, "signed_url")
}

// createArtifactURL makes a signed download URL (what a job document
// gets), for tools and manual updates.
func (s *server) createArtifactURL(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	if err := s.needArtifacts(); err != nil {
		return err
	}
	name, version, err := artifactParams(r)
	if err != nil {
		return err
	}
	l, err := s.artifacts.Resolve(r.Context(), name, version)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, artifactURL{URL: l.URL, Expires: l.Expires, SHA256: l.SHA256, Size: l.Size, Version: l.Version})
}

// deviceDownloadArtifact lets a device fetch an artifact with its own
// credentials. Any authenticated, enabled device may read any artifact.
func (s *server) deviceDownloadArtifact(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	a, err := s.artifact(r)
	if err != nil {
		return err
	}
	return s.serveArtifact(w, r, a, "device")
}

func (s *server) fleetFirmware(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	if err := s.needArtifacts(); err != nil {
		return err
	}
	key, counts, err := s.artifacts.FirmwareCounts(r.Context())
	if err != nil {
		return err
	}
	out := firmwareDistribution{Key: key, Versions: make([]firmwareCount, len(counts))}
	for i, c := range counts {
		out.Versions[i] = firmwareCount{Version: c.Version, Things: c.Things}
	}
	return writeJSON(w, http.StatusOK, out)
}
