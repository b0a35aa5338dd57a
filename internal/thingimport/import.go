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
	c := checker{reg: im.o.Registry, rep: &rep, types: map[string]error{}, groups: map[string]error{}, seen: map[string]int{}}
	n := 0
	for {
		row, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Report{}, err
		}
		if n++; n > im.o.MaxRows {
			return Report{}, core.Errorf(core.KindTooLarge, "the import has more than %d rows (--import-max-rows)", im.o.MaxRows)
		}
		if err := c.add(ctx, row); err != nil {
			return Report{}, err
		}
	}
	if err := c.flush(ctx); err != nil {
		return Report{}, err
	}
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	rows := n
	// One slice of the things to create, allocated once.
	create := make([]store.Thing, 0, c.good)
	secret := make([]bool, 0, c.good)
	createRow := make([]int, 0, c.good) // index in rep.Rows of each thing in create
	for _, ch := range c.create {
		for _, pd := range ch {
			create = append(create, pd.thing)
			secret = append(secret, pd.secret)
			createRow = append(createRow, pd.row)
		}
	}
	c.create = nil

	if req.DryRun || (req.Mode == ModeAtomic && rep.Errors > 0) {
		if req.DryRun {
			rep.Created = len(create)
			im.rows.WithLabelValues("dry_run").Add(float64(rows))
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
	secrets, err := im.o.Registry.CreateThings(ctx, create, secret)
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
	// The secrets come in the order of the things that asked for one.
	next := 0
	for k, i := range createRow {
		if secret[k] && next < len(secrets) && secrets[next].Thing == create[k].Name {
			rep.Rows[i].CredentialID, rep.Rows[i].Secret = secrets[next].CredentialID, secrets[next].Secret
			next++
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

// existBatch is how many names are checked against the store at once.
const existBatch = 500

// createChunk is how many things to create are kept per chunk while the
// file is read, so that the list never grows by copying.
const createChunk = 4096

// pending is a row that passed every check but the store's: is a thing
// of its name there already?
type pending struct {
	thing  store.Thing
	secret bool
	row    int // index in Report.Rows
}

// checker checks rows as they are read: each on its own, against the
// file's earlier rows, and, existBatch at a time, against the store.
type checker struct {
	reg    *registry.Registry
	rep    *Report
	types  map[string]error // checked thing types
	groups map[string]error // checked groups
	seen   map[string]int   // name → line of its first row
	batch  []pending        // waiting for the existence check
	create [][]pending      // to create, in chunks of createChunk
	good   int              // pending rows in create
}

// add checks one row; an error ends the import (the store failed).
func (c *checker) add(ctx context.Context, row Row) error {
	t := row.Thing
	err := row.Err
	if err == nil {
		err = registry.CheckNewThing(t)
	}
	if err == nil {
		if first, dup := c.seen[t.Name]; dup {
			err = core.Invalid("name", "the name %q is also on line %d", t.Name, first)
		} else {
			c.seen[t.Name] = row.Line
		}
	}
	if err == nil && t.Type != "" {
		e, ok := c.types[t.Type]
		if !ok {
			_, e = c.reg.GetType(ctx, t.Type)
			if core.KindOf(e) == core.KindNotFound {
				e = core.Invalid("type", "thing type %q does not exist", t.Type)
			}
			c.types[t.Type] = e
		}
		err = e
	}
	for _, g := range t.Groups {
		if err != nil {
			break
		}
		e, ok := c.groups[g]
		if !ok {
			var grp store.Group
			grp, e = c.reg.GetGroup(ctx, g)
			switch {
			case core.KindOf(e) == core.KindNotFound:
				e = core.Invalid("groups", "group %q does not exist", g)
			case e == nil && registry.GroupIsDynamic(grp):
				e = core.Invalid("groups", "group %q is dynamic: its members are the things that match its query", g)
			}
			c.groups[g] = e
		}
		err = e
	}
	res := RowResult{Line: row.Line, Name: clip(t.Name), Result: ResultCreated}
	if err != nil {
		if core.KindOf(err) == core.KindInternal {
			return err
		}
		res.Result, res.Reason = ResultError, reason(err)
		c.rep.Errors++
		c.rep.Rows = append(c.rep.Rows, res)
		return nil
	}
	if c.batch == nil {
		c.batch = make([]pending, 0, existBatch)
	}
	c.batch = append(c.batch, pending{thing: t, secret: row.Credential == CredentialSecret, row: len(c.rep.Rows)})
	c.rep.Rows = append(c.rep.Rows, res)
	if len(c.batch) == existBatch {
		return c.flush(ctx)
	}
	return nil
}

// flush checks the batch against the store: a row whose thing exists is
// unchanged (the same fields, no credential asked for) or an error; the
// others are to be created.
func (c *checker) flush(ctx context.Context) error {
	if len(c.batch) == 0 {
		return nil
	}
	names := make([]string, len(c.batch))
	for i, pd := range c.batch {
		names[i] = pd.thing.Name
	}
	existing, err := c.reg.GetThings(ctx, names)
	if err != nil {
		return err
	}
	for _, pd := range c.batch {
		res := &c.rep.Rows[pd.row]
		if ex, ok := existing[pd.thing.Name]; ok {
			switch {
			case pd.secret:
				err = core.Conflict("thing %q exists: a credential is made only for a new thing", pd.thing.Name)
			case same(ex, pd.thing):
				res.Result = ResultUnchanged
				c.rep.Unchanged++
				continue
			default:
				err = core.Conflict("thing %q exists with other fields (import does not change things)", pd.thing.Name)
			}
			res.Result, res.Reason = ResultError, reason(err)
			c.rep.Errors++
			continue
		}
		pd.thing.Enabled = true
		if pd.thing.Attributes == nil {
			pd.thing.Attributes = map[string]string{}
		}
		if k := len(c.create); k == 0 || len(c.create[k-1]) == createChunk {
			c.create = append(c.create, make([]pending, 0, createChunk))
		}
		k := len(c.create) - 1
		c.create[k] = append(c.create[k], pd)
		c.good++
	}
	c.batch = c.batch[:0]
	return nil
}
