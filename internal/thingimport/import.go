package thingimport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
)

// Modes of an import.
const (
	ModeAtomic     = "atomic"     // every row is good, and all are created, or nothing is
	ModeBestEffort = "bestEffort" // the good rows are created, the bad ones reported
)

// Results of a row.
const (
	ResultCreated   = "created"   // created (in a dry run: would be)
	ResultUnchanged = "unchanged" // a thing of that name exists with the same fields
	ResultError     = "error"     // not created: Reason says why
)

// Options configure an Importer.
type Options struct {
	Registry *registry.Registry
	// MaxRows bounds the rows of one import (0: 200000); MaxSize its
	// body in bytes (0: 64 MiB), enforced by the caller that reads it.
	MaxRows int
	MaxSize int64
	Logger  *slog.Logger
	Metrics prometheus.Registerer // may be nil
}

// Importer imports things.
type Importer struct {
	o    Options
	rows *prometheus.CounterVec
}

// New returns an Importer.
func New(o Options) *Importer {
	if o.MaxRows <= 0 {
		o.MaxRows = 200_000
	}
	if o.MaxSize <= 0 {
		o.MaxSize = 64 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	im := &Importer{o: o, rows: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mote_import_rows_total",
		Help: "Rows of bulk thing imports (POST /things:import) by result: created, unchanged, error, and dry_run (checked only).",
	}, []string{"result"})}
	for _, r := range []string{ResultCreated, ResultUnchanged, ResultError, "dry_run"} {
		im.rows.WithLabelValues(r)
	}
	if o.Metrics != nil {
		o.Metrics.MustRegister(im.rows)
	}
	return im
}

// MaxSize is the largest import body, in bytes.
func (im *Importer) MaxSize() int64 { return im.o.MaxSize }

// Request is how to import.
type Request struct {
	Mode   string // ModeAtomic ("" too) or ModeBestEffort
	DryRun bool
}

// RowResult is the outcome of one row.
type RowResult struct {
	Line         int    `json:"line"`
	Name         string `json:"name"`
	Result       string `json:"result"`
	Reason       string `json:"reason,omitempty"`
	CredentialID string `json:"credentialId,omitempty"`
	Secret       string `json:"secret,omitempty"` // shown once
}

// Report is the outcome of an import.
type Report struct {
	Mode      string      `json:"mode"`
	DryRun    bool        `json:"dryRun"`
	Applied   bool        `json:"applied"` // things were created (or nothing needed to be)
	Created   int         `json:"created"`
	Unchanged int         `json:"unchanged"`
	Errors    int         `json:"errors"`
	Rows      []RowResult `json:"rows"`
}

// Import reads every row of p, checks each, and creates the good ones as
// req says. A malformed file (*SyntaxError, 400) or more than MaxRows rows
// (core.KindTooLarge, 413) end it with an error and nothing created; bad
// rows are reported in the Report.
func (im *Importer) Import(ctx context.Context, p Parser, req Request) (Report, error) {
	switch req.Mode {
	case "":
		req.Mode = ModeAtomic
	case ModeAtomic, ModeBestEffort:
	default:
		return Report{}, core.Invalid("mode", "mode must be atomic or bestEffort, not %q", clip(req.Mode))
	}
	rep := Report{Mode: req.Mode, DryRun: req.DryRun, Rows: []RowResult{}}
	var rows []Row
	for {
		row, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Report{}, err
		}
		if len(rows) >= im.o.MaxRows {
			return Report{}, core.Errorf(core.KindTooLarge, "the import has more than %d rows (--import-max-rows)", im.o.MaxRows)
		}
		rows = append(rows, row)
	}
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}

	reg := im.o.Registry
	types := map[string]error{}
	groups := map[string]error{}
	seen := make(map[string]int, len(rows))
	var create []store.Thing
	var secret []bool
	var createRow []int // index in rep.Rows of each thing in create
	for _, row := range rows {
		t := row.Thing
		res := RowResult{Line: row.Line, Name: clip(t.Name), Result: ResultError}
		err := row.Err
		if err == nil {
			err = registry.CheckNewThing(t)
		}
		if err == nil {
			if first, dup := seen[t.Name]; dup {
				err = core.Invalid("name", "the name %q is also on line %d", t.Name, first)
			} else {
				seen[t.Name] = row.Line
			}
		}
		if err == nil && t.Type != "" {
			e, ok := types[t.Type]
			if !ok {
				_, e = reg.GetType(ctx, t.Type)
				if core.KindOf(e) == core.KindNotFound {
					e = core.Invalid("type", "thing type %q does not exist", t.Type)
				}
				types[t.Type] = e
			}
			err = e
		}
		for _, g := range t.Groups {
			if err != nil {
				break
			}
			e, ok := groups[g]
			if !ok {
				var grp store.Group
				grp, e = reg.GetGroup(ctx, g)
				switch {
				case core.KindOf(e) == core.KindNotFound:
					e = core.Invalid("groups", "group %q does not exist", g)
				case e == nil && registry.GroupIsDynamic(grp):
					e = core.Invalid("groups", "group %q is dynamic: its members are the things that match its query", g)
				}
				groups[g] = e
			}
			err = e
		}
		if err == nil {
			existing, e := reg.GetThing(ctx, t.Name)
			switch {
			case e == nil && row.Credential != CredentialNone:
				err = core.Conflict("thing %q exists: a credential is made only for a new thing", t.Name)
			case e == nil && same(existing, t):
				res.Result, res.Reason = ResultUnchanged, ""
				rep.Unchanged++
				rep.Rows = append(rep.Rows, res)
				continue
			case e == nil:
				err = core.Conflict("thing %q exists with other fields (import does not change things)", t.Name)
			case core.KindOf(e) != core.KindNotFound:
				err = e
			}
		}
		if err != nil {
			if core.KindOf(err) == core.KindInternal {
				return Report{}, err
			}
			res.Reason = reason(err)
			rep.Errors++
			rep.Rows = append(rep.Rows, res)
			continue
		}
		t.Enabled = true
		if t.Attributes == nil {
			t.Attributes = map[string]string{}
		}
		create = append(create, t)
		secret = append(secret, row.Credential == CredentialSecret)
		createRow = append(createRow, len(rep.Rows))
		res.Result = ResultCreated
		rep.Rows = append(rep.Rows, res)
	}

	if req.DryRun || (req.Mode == ModeAtomic && rep.Errors > 0) {
		if req.DryRun {
			rep.Created = len(create)
			im.rows.WithLabelValues("dry_run").Add(float64(len(rows)))
		} else {
			// Nothing is created: the good rows say so.
			for _, i := range createRow {
				rep.Rows[i].Result, rep.Rows[i].Reason = ResultError, "not created: other rows have errors (mode atomic)"
			}
			rep.Errors += len(createRow)
			im.rows.WithLabelValues(ResultError).Add(float64(rep.Errors))
		}
		return rep, nil
	}
	secrets, err := reg.CreateThings(ctx, create, secret)
	if err != nil {
		if core.KindOf(err) == core.KindInternal || errors.Is(err, context.Canceled) {
			return Report{}, err
		}
		// A race (a thing created meanwhile): nothing was created.
		for _, i := range createRow {
			rep.Rows[i].Result, rep.Rows[i].Reason = ResultError, "not created: "+reason(err)
		}
		rep.Errors += len(createRow)
		im.rows.WithLabelValues(ResultError).Add(float64(rep.Errors))
		return rep, nil
	}
	byThing := make(map[string]registry.ImportedSecret, len(secrets))
	for _, s := range secrets {
		byThing[s.Thing] = s
	}
	for _, i := range createRow {
		if s, ok := byThing[rep.Rows[i].Name]; ok {
			rep.Rows[i].CredentialID, rep.Rows[i].Secret = s.CredentialID, s.Secret
		}
	}
	rep.Created = len(create)
	rep.Applied = true
	im.rows.WithLabelValues(ResultCreated).Add(float64(rep.Created))
	im.rows.WithLabelValues(ResultUnchanged).Add(float64(rep.Unchanged))
	im.rows.WithLabelValues(ResultError).Add(float64(rep.Errors))
	im.o.Logger.Info("things imported", "created", rep.Created, "unchanged", rep.Unchanged, "errors", rep.Errors, "secrets", len(secrets))
	return rep, nil
}

// same reports whether an existing thing has the row's fields.
func same(existing, t store.Thing) bool {
	attrs := t.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	norm := func(l []string) []string {
		l = slices.Clone(store.Uniq(l))
		slices.Sort(l)
		if l == nil {
			l = []string{}
		}
		return l
	}
	return existing.Type == t.Type && maps.Equal(existing.Attributes, attrs) &&
		slices.Equal(norm(existing.Groups), norm(t.Groups)) &&
		(t.Tags == nil || slices.Equal(norm(existing.Tags), norm(t.Tags)))
}

func reason(err error) string {
	var ce *core.Error
	if errors.As(err, &ce) {
		return ce.Error()
	}
	return fmt.Sprint(err)
}
