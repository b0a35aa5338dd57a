package httpapi

import (
	"errors"
	"mime"
	"net/http"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/thingimport"
)

// importThings is POST /things:import (docs/import.md): a CSV or JSON
// lines body, parsed as it streams in, at most --import-max-size bytes
// (413) and --import-max-rows rows (413); a malformed file is a 400 naming
// its line. The answer is the per-row report: 200, or 422 when an atomic
// import had errors and created nothing.
func (s *server) importThings(w http.ResponseWriter, r *http.Request) error {
	if s.importer == nil {
		return core.Errorf(core.KindUnavailable, "bulk import is not enabled on this server")
	}
	q, err := parseQuery(r, "", "mode", "dryRun")
	if err != nil {
		return err
	}
	dry, err := q.boolean("dryRun")
	if err != nil {
		return err
	}
	req := thingimport.Request{Mode: q.vals["mode"], DryRun: dry != nil && *dry}
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	var format string
	switch mt {
	case "text/csv":
		format = thingimport.FormatCSV
	case "application/x-ndjson", "application/jsonl", "application/jsonlines", "application/x-jsonlines":
		format = thingimport.FormatJSONL
	default:
		return &httpError{status: http.StatusUnsupportedMediaType, kind: "unsupported_media_type",
			msg: "the import body must be text/csv or application/x-ndjson (JSON lines), not " + quoteOrNone(ct)}
	}
	max := s.importer.MaxSize()
	if r.ContentLength > max {
		return core.Errorf(core.KindTooLarge, "the import body is larger than %d bytes (--import-max-size)", max)
	}
	s.extendUploadDeadline(w, r)
	body := http.MaxBytesReader(w, r.Body, max)
	p, err := thingimport.NewParser(format, body)
	if err == nil {
		var rep thingimport.Report
		rep, err = s.importer.Import(r.Context(), p, req)
		if err == nil {
			noteAudit(r, "", map[string]any{"mode": rep.Mode, "dryRun": rep.DryRun, "applied": rep.Applied,
				"created": rep.Created, "unchanged": rep.Unchanged, "errors": rep.Errors})
			status := http.StatusOK
			if !rep.Applied && !rep.DryRun && rep.Errors > 0 {
				status = http.StatusUnprocessableEntity
			}
			return writeJSON(w, status, rep)
		}
	}
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return core.Errorf(core.KindTooLarge, "the import body is larger than %d bytes (--import-max-size)", max)
	}
	if se, ok := errors.AsType[*thingimport.SyntaxError](err); ok {
		return core.Invalid("", "%s", se.Error())
	}
	return err
}

func quoteOrNone(s string) string {
	if s == "" {
		return "none"
	}
	return "\"" + s + "\""
}
