package daemon

import (
	"context"
	"strings"

	"github.com/moteiot/mote/internal/artifacts"
	"github.com/moteiot/mote/internal/jobs"
)

// jobArtifacts resolves the artifact placeholders of job documents
// (${mote:artifact:NAME} or ${mote:artifact:NAME:VERSION}, docs/jobs.md)
// to a signed download URL with the artifact's SHA-256 and size, fresh
// for every execution.
type jobArtifacts struct{ s *artifacts.Service }

func (a jobArtifacts) Resolve(ctx context.Context, name, _ string) (jobs.Artifact, error) {
	n, version, _ := strings.Cut(name, ":")
	l, err := a.s.Resolve(ctx, n, version)
	if err != nil {
		return jobs.Artifact{}, err
	}
	return jobs.Artifact{URL: l.URL, SHA256: l.SHA256, Size: l.Size}, nil
}
