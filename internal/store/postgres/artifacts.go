package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type artifactStore struct{ s *Store }

const artifactSelect = `SELECT name, version, content_type, size, sha256, signature, signing_key, blob_key, created_at FROM artifacts`

func scanArtifact(row scanner) (store.Artifact, error) {
	var (
		a           store.Artifact
		sig, sigKey *string
		created     time.Time
	)
	if err := row.Scan(&a.Name, &a.Version, &a.ContentType, &a.Size, &a.SHA256, &sig, &sigKey, &a.BlobKey, &created); err != nil {
		return store.Artifact{}, err
	}
	if sig != nil {
		a.Signature = *sig
	}
	if sigKey != nil {
		a.SigningKey = *sigKey
	}
	a.CreatedAt = created.UTC()
	return a, nil
}

func (as *artifactStore) Create(ctx context.Context, a store.Artifact) (store.Artifact, error) {
	if err := requireName("name", a.Name); err != nil {
		return store.Artifact{}, err
	}
	if err := requireName("version", a.Version); err != nil {
		return store.Artifact{}, err
	}
	a.CreatedAt = orNow(a.CreatedAt)
	err := as.s.inTx(ctx, func(tx pgx.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM artifacts WHERE name = $1 AND version = $2`, a.Name, a.Version)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("artifact %q version %q already exists", a.Name, a.Version)
		}
		_, err = tx.Exec(ctx, `INSERT INTO artifacts (name, version, content_type, size, sha256, signature, signing_key, blob_key, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			a.Name, a.Version, a.ContentType, a.Size, a.SHA256, nullString(a.Signature), nullString(a.SigningKey), a.BlobKey, a.CreatedAt)
		if err != nil {
			return internal("create artifact", err)
		}
		return nil
	})
	if err != nil {
		return store.Artifact{}, err
	}
	return a, nil
}

func (as *artifactStore) Get(ctx context.Context, name, version string) (store.Artifact, error) {
	return getOne(as.s.pool.QueryRow(ctx, artifactSelect+` WHERE name = $1 AND version = $2`, name, version), scanArtifact, "artifact", name+"@"+version)
}

func (as *artifactStore) Latest(ctx context.Context, name string) (store.Artifact, error) {
	return getOne(as.s.pool.QueryRow(ctx, artifactSelect+` WHERE name = $1 ORDER BY created_at DESC, version DESC LIMIT 1`, name), scanArtifact, "artifact", name)
}

func (as *artifactStore) List(ctx context.Context, f store.ArtifactFilter) ([]store.Artifact, error) {
	var (
		where []string
		a     args
	)
	if f.Name != "" {
		where = append(where, "name = "+a.add(f.Name))
	}
	if f.After != "" {
		n, v, _ := strings.Cut(f.After, "\x00")
		pn, pv := a.add(n), a.add(v)
		where = append(where, "(name > "+pn+" OR (name = "+pn+" AND version > "+pv+"))")
	}
	q := artifactSelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY name, version LIMIT " + a.add(normLimit(f.Limit))
	return queryList(ctx, as.s.pool, "list artifacts", scanArtifact, q, a...)
}

func (as *artifactStore) Delete(ctx context.Context, name, version string) error {
	tag, err := as.s.pool.Exec(ctx, `DELETE FROM artifacts WHERE name = $1 AND version = $2`, name, version)
	return affected(tag, err, "delete artifact", "artifact", name+"@"+version)
}

// FirmwareCounts groups things by state.reported.<key> of their classic
// shadow, as the SQLite backend does.
func (as *artifactStore) FirmwareCounts(ctx context.Context, key string) ([]store.FirmwareCount, error) {
	return queryList(ctx, as.s.pool, "count firmware", func(row scanner) (store.FirmwareCount, error) {
		var c store.FirmwareCount
		err := row.Scan(&c.Version, &c.Things)
		return c, err
	}, `
		SELECT v, count(*)::int AS n FROM (
			SELECT CASE WHEN jsonb_typeof(s.document::jsonb->'state'->'reported'->$1) IN ('string', 'number')
				THEN s.document::jsonb->'state'->'reported'->>$1 ELSE '' END COLLATE "C" AS v
			FROM things t LEFT JOIN shadows s ON s.thing = t.name AND s.name = '' AND s.document IS NOT NULL
		) x GROUP BY v ORDER BY n DESC, v`, key)
}

type fileStore struct{ s *Store }

const fileSelect = `SELECT thing, name, content_type, complete, size, sha256, blob_key, upload_id, received, total, parts, created_at, updated_at FROM files`

func scanFile(row scanner) (store.File, error) {
	var (
		f                store.File
		sum, key, upload *string
		created, updated time.Time
	)
	if err := row.Scan(&f.Thing, &f.Name, &f.ContentType, &f.Complete, &f.Size, &sum, &key, &upload, &f.Received, &f.Total, &f.Parts, &created, &updated); err != nil {
		return store.File{}, err
	}
	if sum != nil {
		f.SHA256 = *sum
	}
	if key != nil {
		f.BlobKey = *key
	}
	if upload != nil {
		f.UploadID = *upload
	}
	f.CreatedAt, f.UpdatedAt = created.UTC(), updated.UTC()
	return f, nil
}

func (fs *fileStore) Put(ctx context.Context, f store.File) (store.File, error) {
	if err := requireName("name", f.Name); err != nil {
		return store.File{}, err
	}
	var out store.File
	err := fs.s.inTx(ctx, func(tx pgx.Tx) error {
		ok, err := exists(ctx, tx, `SELECT 1 FROM things WHERE name = $1`, f.Thing)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("thing", f.Thing)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO files (thing, name, content_type, complete, size, sha256, blob_key, upload_id, received, total, parts, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			ON CONFLICT (thing, name) DO UPDATE SET content_type = excluded.content_type, complete = excluded.complete, size = excluded.size,
				sha256 = excluded.sha256, blob_key = excluded.blob_key, upload_id = excluded.upload_id, received = excluded.received,
				total = excluded.total, parts = excluded.parts, updated_at = excluded.updated_at`,
			f.Thing, f.Name, f.ContentType, f.Complete, f.Size, nullString(f.SHA256), nullString(f.BlobKey), nullString(f.UploadID),
			f.Received, f.Total, f.Parts, orNow(f.CreatedAt), now()); err != nil {
			return internal("store file", err)
		}
		out, err = getOne(tx.QueryRow(ctx, fileSelect+` WHERE thing = $1 AND name = $2`, f.Thing, f.Name), scanFile, "file", f.Name)
		return err
	})
	return out, err
}

func (fs *fileStore) Get(ctx context.Context, thing, name string) (store.File, error) {
	return getOne(fs.s.pool.QueryRow(ctx, fileSelect+` WHERE thing = $1 AND name = $2`, thing, name), scanFile, "file", name)
}

func (fs *fileStore) List(ctx context.Context, thing string) ([]store.File, error) {
	return queryList(ctx, fs.s.pool, "list files", scanFile, fileSelect+` WHERE thing = $1 ORDER BY name`, thing)
}

func (fs *fileStore) Delete(ctx context.Context, thing, name string) error {
	tag, err := fs.s.pool.Exec(ctx, `DELETE FROM files WHERE thing = $1 AND name = $2`, thing, name)
	return affected(tag, err, "delete file", "file", name)
}

func (fs *fileStore) Usage(ctx context.Context, thing string) (int64, error) {
	var n int64
	if err := fs.s.pool.QueryRow(ctx, `SELECT coalesce(sum(size + received), 0)::bigint FROM files WHERE thing = $1`, thing).Scan(&n); err != nil {
		return 0, internal("file usage", err)
	}
	return n, nil
}
