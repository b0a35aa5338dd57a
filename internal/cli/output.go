package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
)

// jsonOut reports whether --output json is in effect.
func (a *app) jsonOut() bool { return a.output == "json" }

// printJSON writes v as one indented JSON document.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// printf writes a line of human-readable output to stdout.
func (a *app) printf(format string, args ...any) {
	fmt.Fprintf(a.stdout, format, args...)
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = cell(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// details writes "Key:  value" lines, aligned.
type details struct{ tw *tabwriter.Writer }

func newDetails(w io.Writer) *details {
	return &details{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
}

func (d *details) add(key, value string) { fmt.Fprintf(d.tw, "%s:\t%s\n", key, cell(value)) }

func (d *details) flush() error { return d.tw.Flush() }

// cell makes s safe for one table cell: no tabs or line breaks, "-" when
// empty.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return fmtTime(*t)
}

func fmtList(s []string) string { return strings.Join(s, ",") }

func fmtAttrs(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ", ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// serverHost is the host name of --server, for example commands.
func (a *app) serverHost() string {
	u, err := url.Parse(a.server)
	if err != nil || u.Hostname() == "" {
		return "localhost"
	}
	return u.Hostname()
}

// ---- list flags ----

// listFlags are the paging flags of list commands.
type listFlags struct {
	limit  int
	cursor string
	all    bool
}

func (l *listFlags) register(cmd *cobra.Command, what string) {
	cmd.Flags().IntVar(&l.limit, "limit", 0, "page size, 1-1000 (default: the server's, 100)")
	cmd.Flags().StringVar(&l.cursor, "cursor", "", "start at this cursor (printed when there are more "+what+")")
	cmd.Flags().BoolVar(&l.all, "all", false, "fetch every page")
}

func (l *listFlags) check() error {
	if l.limit < 0 || l.limit > 1000 {
		return usageErrorf("--limit must be between 1 and 1000")
	}
	return nil
}

// fetch returns one page, or every page with --all.
func fetch[T any](cmd *cobra.Command, l *listFlags, page func(cursor string) ([]T, string, error)) ([]T, string, error) {
	if !l.all {
		return page(l.cursor)
	}
	first := true
	items, err := apiclient.All(cmd.Context(), func(cur string) ([]T, string, error) {
		if first {
			first, cur = false, l.cursor
		}
		return page(cur)
	})
	return items, "", err
}

// moreHint tells on stderr that a list has more pages.
func (a *app) moreHint(what, next string) {
	if next != "" {
		fmt.Fprintf(a.stderr, "(more %s: use --all, or --cursor %s)\n", what, next)
	}
}

// ---- input ----

// readInput reads a file named by a flag; "-" is stdin.
func (a *app) readInput(flag, name string) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(a.stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, inputError("--%s: %v", flag, err)
	}
	return b, nil
}

// parseKV parses KEY=VALUE flag values.
func parseKV(flag string, list []string) (map[string]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(list))
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErrorf("--%s %q: want KEY=VALUE", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}

// parseExpiry parses an expiry given as an RFC 3339 time or as a duration
// from now ("720h", "90d").
func parseExpiry(flag, s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		t = t.UTC()
		return &t, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(days, "%d", &n); err != nil || fmt.Sprint(n) != days || n <= 0 {
			return nil, usageErrorf("--%s %q: want an RFC 3339 time or a duration like 720h or 90d", flag, s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d <= 0 {
			return nil, usageErrorf("--%s %q: want an RFC 3339 time or a duration like 720h or 90d", flag, s)
		}
	}
	t := time.Now().Add(d).UTC().Truncate(time.Second)
	return &t, nil
}
