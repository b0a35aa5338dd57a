package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Artifact is what an artifact placeholder expands to for one execution.
type Artifact struct {
	URL    string // where the thing downloads it (e.g. a short-lived signed URL)
	SHA256 string // hex
	Size   int64
}

// ArtifactResolver expands artifact placeholders; internal/artifacts
// implements it (wired by the daemon). Resolve returns the download of
// the artifact name for thing ("" when a job is created: only check that
// it exists), or core.NotFound.
type ArtifactResolver interface {
	Resolve(ctx context.Context, name, thing string) (Artifact, error)
}

// A placeholder in a job document: ${mote:artifact:NAME} is the URL,
// ${mote:artifact:NAME:sha256} the hex SHA-256, ${mote:artifact:NAME:size}
// the size (a JSON number when it is the whole string). They are
// replaced in every string of the document, per execution.
var placeholderRE = regexp.MustCompile(`\$\{mote:artifact:([^}]+)\}`)

// placeholder splits the inside of a placeholder into name and part.
func placeholder(inner string) (name, part string) {
	for _, p := range []string{"url", "sha256", "size"} {
		if n, ok := strings.CutSuffix(inner, ":"+p); ok && n != "" {
			return n, p
		}
	}
	return inner, "url"
}

// artifactNames returns the artifacts a document names, once each.
func artifactNames(doc []byte) []string {
	var names []string
	seen := map[string]bool{}
	for _, m := range placeholderRE.FindAllSubmatch(doc, -1) {
		n, _ := placeholder(string(m[1]))
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	return names
}

// documentOf returns a spec's document: the given one, or for
// documentSource "artifact:NAME" an OTA document naming the artifact.
func documentOf(sp Spec) []byte {
	if name, ok := strings.CutPrefix(sp.DocumentSource, "artifact:"); ok && len(sp.Document) == 0 {
		b, _ := json.Marshal(map[string]string{
			"operation": "ota",
			"artifact":  name,
			"url":       "${mote:artifact:" + name + "}",
			"sha256":    "${mote:artifact:" + name + ":sha256}",
			"size":      "${mote:artifact:" + name + ":size}",
		})
		return b
	}
	return sp.Document
}

// expandDocument replaces the artifact placeholders of doc for thing.
// A document without placeholders is returned as it is.
func expandDocument(ctx context.Context, doc []byte, thing string, r ArtifactResolver) (json.RawMessage, error) {
	if !placeholderRE.Match(doc) {
		return doc, nil
	}
	if r == nil {
		return nil, core.Errorf(core.KindUnavailable, "the job document names artifacts, and this server has no artifact store")
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, core.Invalid("document", "document is not JSON: %v", err)
	}
	cache := map[string]Artifact{}
	var walkErr error
	resolve := func(name string) (Artifact, bool) {
		if a, ok := cache[name]; ok {
			return a, true
		}
		a, err := r.Resolve(ctx, name, thing)
		if err != nil {
			walkErr = err
			return Artifact{}, false
		}
		cache[name] = a
		return a, true
	}
	var walk func(any) any
	walk = func(x any) any {
		switch t := x.(type) {
		case map[string]any:
			for k, e := range t {
				t[k] = walk(e)
			}
			return t
		case []any:
			for i, e := range t {
				t[i] = walk(e)
			}
			return t
		case string:
			if m := placeholderRE.FindStringSubmatch(t); m != nil && m[0] == t {
				if n, part := placeholder(m[1]); part == "size" {
					a, ok := resolve(n)
					if !ok {
						return t
					}
					return json.Number(strconv.FormatInt(a.Size, 10))
				}
			}
			return placeholderRE.ReplaceAllStringFunc(t, func(s string) string {
				n, part := placeholder(placeholderRE.FindStringSubmatch(s)[1])
				a, ok := resolve(n)
				if !ok {
					return s
				}
				switch part {
				case "sha256":
					return a.SHA256
				case "size":
					return strconv.FormatInt(a.Size, 10)
				}
				return a.URL
			})
		}
		return x
	}
	v = walk(v)
	if walkErr != nil {
		return nil, walkErr
	}
	return json.Marshal(v)
}

// ArtifactUse tells internal/artifacts which artifacts jobs use, from the
// job store (so that the artifact service, created before the job
// service, needs nothing of it): an artifact is in use while a job in
// progress names it in its document, by name alone (the newest version,
// resolved per execution) or at that version.
type ArtifactUse struct {
	Store store.JobStore
}

// ArtifactInUse returns the id of a job in progress that uses
// name@version, or "" (artifacts.InUse).
func (u ArtifactUse) ArtifactInUse(ctx context.Context, name, version string) (string, error) {
	const page = 1000
	after := ""
	for {
		list, err := u.Store.List(ctx, after, page)
		if err != nil {
			return "", err
		}
		for _, j := range list {
			if j.Status != store.JobInProgress {
				continue
			}
			var sp Spec
			if json.Unmarshal(j.Spec, &sp) != nil {
				continue
			}
			for _, n := range artifactNames(documentOf(sp)) {
				an, av, _ := strings.Cut(n, ":")
				if an == name && (av == "" || av == version) {
					return j.ID, nil
				}
			}
		}
		if len(list) < page {
			return "", nil
		}
		after = list[len(list)-1].ID
	}
}
