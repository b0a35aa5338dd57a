package apiclient

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"time"
)

// ---- firmware artifacts ----

// Artifact is a firmware artifact as the API shows it.
type Artifact struct {
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	ContentType string    `json:"contentType"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	Signed      bool      `json:"signed"`
	SigningKey  string    `json:"signingKey,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
}

// ArtifactUpload describes an upload; SHA256 and Signature are optional.
type ArtifactUpload struct {
	Name, Version, ContentType, SHA256, Signature string
}

// ArtifactURL is a signed download URL.
type ArtifactURL struct {
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
	SHA256  string    `json:"sha256"`
	Size    int64     `json:"size"`
	Version string    `json:"version"`
}

// FirmwareDistribution counts things by reported firmware version.
type FirmwareDistribution struct {
	Key      string `json:"key"`
	Versions []struct {
		Version string `json:"version"`
		Things  int    `json:"things"`
	} `json:"versions"`
}

// UploadArtifact streams content as a new artifact.
func (c *Client) UploadArtifact(ctx context.Context, u ArtifactUpload, content io.Reader) (Artifact, error) {
	q := url.Values{"name": {u.Name}, "version": {u.Version}}
	if u.SHA256 != "" {
		q.Set("sha256", u.SHA256)
	}
	if u.Signature != "" {
		q.Set("signature", u.Signature)
	}
	ct := u.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	var out Artifact
	err := c.do(ctx, request{method: http.MethodPost, path: "/artifacts", query: q, raw: content, rawType: ct}, &out)
	return out, err
}

// ListArtifacts returns one page of artifacts (of one name, if not "").
func (c *Client) ListArtifacts(ctx context.Context, name string, o ListOptions) ([]Artifact, string, error) {
	q := o.values()
	if name != "" {
		q.Set("name", name)
	}
	return list[Artifact](ctx, c, "/artifacts", q)
}

// GetArtifact returns an artifact version ("latest": the newest).
func (c *Client) GetArtifact(ctx context.Context, name, version string) (Artifact, error) {
	var out Artifact
	err := c.do(ctx, request{method: http.MethodGet, path: "/artifacts/" + seg(name) + "/" + seg(version)}, &out)
	return out, err
}

// DeleteArtifact deletes an artifact version.
func (c *Client) DeleteArtifact(ctx context.Context, name, version string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/artifacts/" + seg(name) + "/" + seg(version)}, nil)
}

// ArtifactURL makes a signed download URL.
func (c *Client) ArtifactURL(ctx context.Context, name, version string) (ArtifactURL, error) {
	var out ArtifactURL
	err := c.do(ctx, request{method: http.MethodPost, path: "/artifacts/" + seg(name) + "/" + seg(version) + "/url"}, &out)
	return out, err
}

// FleetFirmware returns the fleet's firmware distribution.
func (c *Client) FleetFirmware(ctx context.Context) (FirmwareDistribution, error) {
	var out FirmwareDistribution
	err := c.do(ctx, request{method: http.MethodGet, path: "/fleet/firmware"}, &out)
	return out, err
}

// ---- files uploaded by devices ----

// FileUpload is an upload in progress.
type FileUpload struct {
	Received int64  `json:"received"`
	Total    *int64 `json:"total"`
}

// File is a device's file as the API shows it.
type File struct {
	Thing       string      `json:"thing"`
	Name        string      `json:"name"`
	ContentType string      `json:"contentType"`
	Complete    bool        `json:"complete"`
	Size        int64       `json:"size"`
	SHA256      string      `json:"sha256,omitempty"`
	Upload      *FileUpload `json:"upload,omitempty"`
	CreatedAt   time.Time   `json:"createdAt"`
	UpdatedAt   time.Time   `json:"updatedAt"`
}

// ListFiles returns a thing's files.
func (c *Client) ListFiles(ctx context.Context, thing string) ([]File, error) {
	items, _, err := list[File](ctx, c, "/things/"+seg(thing)+"/files", nil)
	return items, err
}

// GetFile returns a file's metadata.
func (c *Client) GetFile(ctx context.Context, thing, name string) (File, error) {
	var out File
	err := c.do(ctx, request{method: http.MethodGet, path: "/things/" + seg(thing) + "/files/" + seg(name)}, &out)
	return out, err
}

// DownloadFile copies a file's content to w and returns the bytes copied.
func (c *Client) DownloadFile(ctx context.Context, thing, name string, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, request{method: http.MethodGet, path: "/things/" + seg(thing) + "/files/" + seg(name) + "/content", accept: "*/*"})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.Copy(w, resp.Body)
}

// DeleteFile deletes a file.
func (c *Client) DeleteFile(ctx context.Context, thing, name string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/things/" + seg(thing) + "/files/" + seg(name)}, nil)
}
