package sqlite

import (
	"context"
	"database/sql"
	"strings"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type artifactStore struct{ s *Store }

const artifactSelect = `SELECT name, version, content_type, size, sha256, signature, signing_key, blob_key, created_at FROM artifacts`

func scanArtifact(row scanner) (store.Artifact, error) {
	var (
		a           store.Artifact
		sig, sigKey sql.NullString
		created     int64
	)
	if err := row.Scan(&a.Name, &a.Version, &a.ContentType, &a.Size, &a.SHA256, &sig, &sigKey, &a.BlobKey, &created); err != nil {
		return store.Artifact{}, err
	}
	a.Signature, a.SigningKey, a.CreatedAt = sig.String, sigKey.String, fromMS(created)
	return a, nil
}

func (as *artifactStore) Create(ctx context.Context, a store.Artifact) (store.Artifact, error) {
	if err := requireName("name", a.Name); err != nil {
		return store.Artifact{}, err
	}
	if err := requireName("version", a.Version); err != nil {
		return store.Artifact{}, err
	}
	a.CreatedAt = fromMS(toMS(orNow(a.CreatedAt)))
	err := as.s.inTx(ctx, func(tx *sql.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM artifacts WHERE name = ? AND version = ?`, a.Name, a.Version)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("artifact %q version %q already exists", a.Name, a.Version)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO artifacts (name, version, content_type, size, sha256, signature, signing_key, blob_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.Name, a.Version, a.ContentType, a.Size, a.SHA256, nullString(a.Signature), nullString(a.SigningKey), a.BlobKey, toMS(a.CreatedAt))
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
	return getOne(as.s.r.QueryRowContext(ctx, artifactSelect+` WHERE name = ? AND version = ?`, name, version), scanArtifact, "artifact", name+"@"+version)
}

func (as *artifactStore) Latest(ctx context.Context, name string) (store.Artifact, error) {
	return getOne(as.s.r.QueryRowContext(ctx, artifactSelect+` WHERE name = ? ORDER BY created_at DESC, version DESC LIMIT 1`, name), scanArtifact, "artifact", name)
}

func (as *artifactStore) List(ctx context.Context, f store.ArtifactFilter) ([]store.Artifact, error) {
	var (
		where []string
		args  []any
	)
	if f.Name != "" {
		where, args = append(where, "name = ?"), append(args, f.Name)
	}
	if f.After != "" {
		n, v, _ := strings.Cut(f.After, "\x00")
		where, args = append(where, "(name > ? OR (name = ? AND version > ?))"), append(args, n, n, v)
	}
	q := artifactSelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY name, version LIMIT ?"
	args = append(args, normLimit(f.Limit))
	rows, err := as.s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, internal("list artifacts", err)
	}
	defer rows.Close()
	list := []store.Artifact{}
	for rows.Next() {
		a, err := scanArtifact(rows)
		if err != nil {
			return nil, internal("list artifacts", err)
		}
		list = append(list, a)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list artifacts", err)
	}
	return list, nil
}

func (as *artifactStore) Delete(ctx context.Context, name, version string) error {
	res, err := as.s.w.ExecContext(ctx, `DELETE FROM artifacts WHERE name = ? AND version = ?`, name, version)
	if err != nil {
		return internal("delete artifact", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return core.NotFound("artifact", name+"@"+version)
	}
	return nil
}

// FirmwareCounts groups things by $.state.reported.<key> of their classic
// shadow.
func (as *artifactStore) FirmwareCounts(ctx context.Context, key string) ([]store.FirmwareCount, error) {
	path := `$.state.reported."` + strings.ReplaceAll(key, `"`, ``) + `"`
	rows, err := as.s.r.QueryContext(ctx, `
		SELECT CASE WHEN json_type(s.document, ?1) IN ('text', 'integer', 'real') THEN CAST(json_extract(s.document, ?1) AS TEXT) ELSE '' END AS v, count(*) AS n
		FROM things t LEFT JOIN shadows s ON s.thing = t.name AND s.name = '' AND s.document IS NOT NULL AND json_valid(s.document)
		GROUP BY v ORDER BY n DESC, v`, path)
	if err != nil {
		return nil, internal("count firmware", err)
	}
	defer rows.Close()
	list := []store.FirmwareCount{}
	for rows.Next() {
		var c store.FirmwareCount
		if err := rows.Scan(&c.Version, &c.Things); err != nil {
			return nil, internal("count firmware", err)
		}
		list = append(list, c)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("count firmware", err)
	}
	return list, nil
}

type fileStore struct{ s *Store }

const fileSelect = `SELECT thing, name, content_type, complete, size, sha256, blob_key, upload_id, received, total, parts, created_at, updated_at FROM files`

func scanFile(row scanner) (store.File, error) {
	var (
		f                store.File
		sum, key, upload sql.NullString
		complete         int64
		created, updated int64
	)
	if err := row.Scan(&f.Thing, &f.Name, &f.ContentType, &complete, &f.Size, &sum, &key, &upload, &f.Received, &f.Total, &f.Parts, &created, &updated); err != nil {
		return store.File{}, err
	}
	f.Complete = complete != 0
	f.SHA256, f.BlobKey, f.UploadID = sum.String, key.String, upload.String
	f.CreatedAt, f.UpdatedAt = fromMS(created), fromMS(updated)
	return f, nil
}

func (fs *fileStore) Put(ctx context.Context, f store.File) (store.File, error) {
	if err := requireName("name", f.Name); err != nil {
		return store.File{}, err
	}
	var out store.File
	err := fs.s.inTx(ctx, func(tx *sql.Tx) error {
		ok, err := exists(ctx, tx, `SELECT 1 FROM things WHERE name = ?`, f.Thing)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("thing", f.Thing)
		}
		at := now()
		created := orNow(f.CreatedAt)
		complete := 0
		if f.Complete {
			complete = 1
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO files (thing, name, content_type, complete, size, sha256, blob_key, upload_id, received, total, parts, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (thing, name) DO UPDATE SET content_type = excluded.content_type, complete = excluded.complete, size = excluded.size,
				sha256 = excluded.sha256, blob_key = excluded.blob_key, upload_id = excluded.upload_id, received = excluded.received,
				total = excluded.total, parts = excluded.parts, updated_at = excluded.updated_at`,
			f.Thing, f.Name, f.ContentType, complete, f.Size, nullString(f.SHA256), nullString(f.BlobKey), nullString(f.UploadID),
			f.Received, f.Total, f.Parts, toMS(created), toMS(at)); err != nil {
			return internal("store file", err)
		}
		out, err = getOne(tx.QueryRowContext(ctx, fileSelect+` WHERE thing = ? AND name = ?`, f.Thing, f.Name), scanFile, "file", f.Name)
		return err
	})
	return out, err
}

func (fs *fileStore) Get(ctx context.Context, thing, name string) (store.File, error) {
	return getOne(fs.s.r.QueryRowContext(ctx, fileSelect+` WHERE thing = ? AND name = ?`, thing, name), scanFile, "file", name)
}

func (fs *fileStore) List(ctx context.Context, thing string) ([]store.File, error) {
	rows, err := fs.s.r.QueryContext(ctx, fileSelect+` WHERE thing = ? ORDER BY name`, thing)
	if err != nil {
		return nil, internal("list files", err)
	}
	defer rows.Close()
	list := []store.File{}
	for rows.Next() {
		f, err := scanFile(rows)
		if err != nil {
			return nil, internal("list files", err)
		}
		list = append(list, f)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list files", err)
	}
	return list, nil
}

func (fs *fileStore) Delete(ctx context.Context, thing, name string) error {
	res, err := fs.s.w.ExecContext(ctx, `DELETE FROM files WHERE thing = ? AND name = ?`, thing, name)
	if err != nil {
		return internal("delete file", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return core.NotFound("file", name)
	}
	return nil
}

func (fs *fileStore) Usage(ctx context.Context, thing string) (int64, error) {
	var n int64
	if err := fs.s.r.QueryRowContext(ctx, `SELECT coalesce(sum(size + received), 0) FROM files WHERE thing = ?`, thing).Scan(&n); err != nil {
		return 0, internal("file usage", err)
	}
	return n, nil
}
