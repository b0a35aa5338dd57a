package thingimport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
	"github.com/moteiot/mote/internal/thingimport"
)

func newRegistry(tb testing.TB) (*registry.Registry, *sqlite.Store, *auth.Hasher) {
	tb.Helper()
	dir := tb.TempDir()
	sqlitetest.Seed(tb, filepath.Join(dir, "mote.db"))
	st, err := sqlite.Open(filepath.Join(dir, "mote.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	hasher, err := auth.LoadOrCreateHasher(filepath.Join(dir, "secret.key"))
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"))
	if err != nil {
		tb.Fatal(err)
	}
	reg := registry.New(registry.Options{Store: st, Hasher: hasher, CA: ca})
	ctx := context.Background()
	if _, err := reg.CreateType(ctx, store.ThingType{Name: "sensor"}); err != nil {
		tb.Fatal(err)
	}
	if _, err := reg.CreateGroup(ctx, store.Group{Name: "plant-1"}); err != nil {
		tb.Fatal(err)
	}
	return reg, st, hasher
}

func parseAll(t *testing.T, format, body string) ([]thingimport.Row, error) {
	t.Helper()
	p, err := thingimport.NewParser(format, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	var rows []thingimport.Row
	for {
		r, err := p.Next()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return rows, err
		}
		rows = append(rows, r)
	}
}

func TestParseCSV(t *testing.T) {
	rows, err := parseAll(t, thingimport.FormatCSV, "\ufeffname,type,attributes.site,attributes.floor,groups,credential\n"+
		"t1,sensor,berlin,3,plant-1;plant-2,secret\n"+
		"\n"+
		`"t2",,"quoted, with comma",,,none`+"\n"+
		"t3,sensor,,,,\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("rows = %+v; want 3", rows)
	}
	r := rows[0]
	if r.Line != 2 || r.Thing.Name != "t1" || r.Thing.Type != "sensor" || r.Thing.Attributes["site"] != "berlin" || r.Thing.Attributes["floor"] != "3" ||
		strings.Join(r.Thing.Groups, ",") != "plant-1,plant-2" || r.Credential != "secret" {
		t.Errorf("row 1 = %+v", r)
	}
	if rows[1].Line != 4 || rows[1].Thing.Attributes["site"] != "quoted, with comma" || rows[1].Credential != "" {
		t.Errorf("row 2 = %+v", rows[1])
	}
	if rows[2].Thing.Attributes != nil {
		t.Errorf("row 3 attributes = %v; want none (empty cells set nothing)", rows[2].Thing.Attributes)
	}
	for _, c := range []struct{ body, want string }{
		{"", "line 1: the file is empty"},
		{"type,groups\nx,y\n", "no name column"},
		{"name,color\nx,red\n", `unknown column "color"`},
		{"name,name\n", "appears twice"},
		{"name,type\nt1,sensor\nt2\n", "line 3: malformed CSV: wrong number of fields"},
		{"name,type\nt1,sensor\n\"t2,sensor\n", "line 3: malformed CSV"},
		{"name,type\nt1,\"sen\"sor\"\n", "line 2: malformed CSV"},
		{"name\n" + strings.Repeat("x", thingimport.MaxLine+10) + "\n", "longer than"},
	} {
		_, err := parseAll(t, thingimport.FormatCSV, c.body)
		var se *thingimport.SyntaxError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parse %.40q = %v; want a syntax error with %q", c.body, err, c.want)
		}
	}
	rows, _ = parseAll(t, thingimport.FormatCSV, "name,credential\nt1,x509\n")
	if len(rows) != 1 || rows[0].Err == nil {
		t.Errorf("credential x509: %+v; want a row error", rows)
	}
}

func TestParseJSONL(t *testing.T) {
	rows, err := parseAll(t, thingimport.FormatJSONL, `{"name":"t1","type":"sensor","attributes":{"site":"x"},"groups":["plant-1"],"credential":"secret"}`+"\n\n"+
		`{"name":"t2"}`+"\n")
	if err != nil || len(rows) != 2 || rows[0].Line != 1 || rows[1].Line != 3 || rows[0].Credential != "secret" || rows[0].Thing.Attributes["site"] != "x" {
		t.Fatalf("rows = %+v, %v", rows, err)
	}
	for _, c := range []struct{ body, want string }{
		{`{"name":"t1"}` + "\n" + `{"name":`, "line 2: malformed JSON"},
		{`{"name":"t1","colour":"red"}`, `line 1: malformed JSON: unknown field "colour"`},
		{`{"name":"t1"} {"name":"t2"}`, "more than one JSON value"},
		{`["t1"]`, "line 1: malformed JSON"},
		{`{"name":"` + strings.Repeat("x", thingimport.MaxLine) + `"}`, "longer than"},
	} {
		_, err := parseAll(t, thingimport.FormatJSONL, c.body)
		var se *thingimport.SyntaxError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parse %.40q = %v; want a syntax error with %q", c.body, err, c.want)
		}
	}
}

func importCSV(t *testing.T, im *thingimport.Importer, body string, req thingimport.Request) (thingimport.Report, error) {
	t.Helper()
	p, err := thingimport.NewParser(thingimport.FormatCSV, strings.NewReader(body))
	if err != nil {
		return thingimport.Report{}, err
	}
	return im.Import(context.Background(), p, req)
}

const mixed = "name,type,attributes.site,groups,credential\n" +
	"good-1,sensor,a,plant-1,secret\n" +
	"good-2,,b,,\n" +
	"bad type,sensor,,,\n" + // invalid name
	"t-unknown,nope,,,\n" + // unknown type
	"t-group,,,no-such-group,\n" + // unknown group
	"good-1,,,,\n" // duplicate in the file

func TestImportAtomicWithErrorsCreatesNothing(t *testing.T) {
	reg, st, _ := newRegistry(t)
	im := thingimport.New(thingimport.Options{Registry: reg})
	rep, err := importCSV(t, im, mixed, thingimport.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Applied || rep.Created != 0 || rep.Errors != 6 || rep.Mode != thingimport.ModeAtomic {
		t.Errorf("report = %+v; want nothing applied, 6 errors", rep)
	}
	reasons := map[int]string{}
	for _, r := range rep.Rows {
		reasons[r.Line] = r.Reason
		if r.Secret != "" {
			t.Errorf("row %d has a secret though nothing was created", r.Line)
		}
	}
	for line, want := range map[int]string{2: "other rows have errors", 4: "name", 5: `thing type "nope" does not exist`, 6: `group "no-such-group" does not exist`, 7: "also on line 2"} {
		if !strings.Contains(reasons[line], want) {
			t.Errorf("line %d reason %q; want %q", line, reasons[line], want)
		}
	}
	if n, _, _ := st.Things().Count(context.Background()); n != 0 {
		t.Errorf("%d things exist; want 0", n)
	}
}

func TestImportBestEffort(t *testing.T) {
	reg, st, hasher := newRegistry(t)
	ctx := context.Background()
	if _, err := reg.CreateThing(ctx, store.Thing{Name: "same", Attributes: map[string]string{"site": "z"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreateThing(ctx, store.Thing{Name: "other", Attributes: map[string]string{"site": "y"}}); err != nil {
		t.Fatal(err)
	}
	im := thingimport.New(thingimport.Options{Registry: reg})
	body := mixed + "same,,z,,\nother,,z,,\n"
	// A dry run changes nothing.
	rep, err := importCSV(t, im, body, thingimport.Request{Mode: thingimport.ModeBestEffort, DryRun: true})
	if err != nil || rep.Applied || rep.Created != 2 || rep.Unchanged != 1 || rep.Errors != 5 {
		t.Fatalf("dry run = %+v, %v", rep, err)
	}
	if n, _, _ := st.Things().Count(ctx); n != 2 {
		t.Fatalf("after a dry run: %d things; want 2", n)
	}
	rep, err = importCSV(t, im, body, thingimport.Request{Mode: thingimport.ModeBestEffort})
	if err != nil || !rep.Applied || rep.Created != 2 || rep.Unchanged != 1 || rep.Errors != 5 {
		t.Fatalf("report = %+v, %v", rep, err)
	}
	var secret, credID string
	for _, r := range rep.Rows {
		if r.Name == "good-1" && r.Result == "created" {
			secret, credID = r.Secret, r.CredentialID
		}
		if r.Name == "other" && !strings.Contains(r.Reason, "other fields") {
			t.Errorf("other: %+v; want an error: exists with other fields", r)
		}
	}
	th, err := reg.GetThing(ctx, "good-1")
	if err != nil || th.Type != "sensor" || th.Attributes["site"] != "a" || len(th.Groups) != 1 || !th.Enabled {
		t.Errorf("good-1 = %+v, %v", th, err)
	}
	// The secret handed over authenticates the thing.
	c, err := st.Credentials().FindSecret(ctx, hasher.Hash(secret))
	if secret == "" || err != nil || c.ID != credID || c.Thing != "good-1" {
		t.Errorf("the credential of the imported secret = %+v, %v; want %s of good-1", c, err, credID)
	}
	if n, _, _ := st.Things().Count(ctx); n != 4 {
		t.Errorf("%d things; want 4", n)
	}
}

// TestImportChecksExistenceInBatches imports more rows than one existence
// check reads, some of whose things exist: each row gets its own result.
func TestImportChecksExistenceInBatches(t *testing.T) {
	reg, st, _ := newRegistry(t)
	ctx := context.Background()
	var sb strings.Builder
	sb.WriteString("name,attributes.n\n")
	for i := range 1203 {
		fmt.Fprintf(&sb, "b-%04d,%d\n", i, i)
	}
	for _, i := range []int{0, 499, 500, 1202} { // the edges of the batches: unchanged
		if _, err := reg.CreateThing(ctx, store.Thing{Name: fmt.Sprintf("b-%04d", i), Attributes: map[string]string{"n": fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.CreateThing(ctx, store.Thing{Name: "b-0777", Attributes: map[string]string{"n": "other"}}); err != nil {
		t.Fatal(err)
	}
	im := thingimport.New(thingimport.Options{Registry: reg})
	rep, err := importCSV(t, im, sb.String(), thingimport.Request{Mode: thingimport.ModeBestEffort})
	if err != nil || !rep.Applied || rep.Created != 1198 || rep.Unchanged != 4 || rep.Errors != 1 || len(rep.Rows) != 1203 {
		t.Fatalf("report: applied %v, %d created, %d unchanged, %d errors, %d rows, %v; want 1198, 4, 1", rep.Applied, rep.Created, rep.Unchanged, rep.Errors, len(rep.Rows), err)
	}
	for i, r := range rep.Rows {
		want := thingimport.ResultCreated
		switch i {
		case 0, 499, 500, 1202:
			want = thingimport.ResultUnchanged
		case 777:
			want = thingimport.ResultError
		}
		if r.Line != i+2 || r.Name != fmt.Sprintf("b-%04d", i) || r.Result != want {
			t.Errorf("row %d = %+v; want line %d, %s", i, r, i+2, want)
		}
	}
	if n, _, _ := st.Things().Count(ctx); n != 1203 {
		t.Errorf("%d things; want 1203", n)
	}
}

func TestImportLimits(t *testing.T) {
	reg, _, _ := newRegistry(t)
	im := thingimport.New(thingimport.Options{Registry: reg, MaxRows: 3})
	_, err := importCSV(t, im, "name\na\nb\nc\nd\n", thingimport.Request{})
	if core.KindOf(err) != core.KindTooLarge {
		t.Errorf("4 rows with MaxRows 3 = %v; want too large", err)
	}
	if _, err := importCSV(t, im, "name\na\n", thingimport.Request{Mode: "yolo"}); core.KindOf(err) != core.KindInvalid {
		t.Errorf("mode yolo = %v; want invalid", err)
	}
}

func FuzzParseCSV(f *testing.F) {
	f.Add("name,type,attributes.site,groups,credential\nt1,sensor,x,g1;g2,secret\n")
	f.Add("name\n\"unterminated\n")
	f.Add("name,attributes.\na,b\n")
	f.Add("\ufeffname\n\"a\"\"b\"\n")
	f.Add("\ufeff\"name\",\"type\"\r\nt1,sensor\r\n\r\nt2,\r\n")               // BOM, quoted header, CRLF, blank line
	f.Add("name,type\nt1,sensor\nt2\nt3,a,b\n")                                // wrong column counts
	f.Add("name,type\nt1,sen\"sor\nt2,\"a\"b\n")                               // bare and misplaced quotes
	f.Add("name,groups,tags,credential\nt1,g1|g2; g3,,none\nt2,;;,a;b,x509\n") // list separators, a bad credential
	f.Add("name,attributes.a,attributes.b\nt1,,\nt2,\"multi\nline\",x\n")      // empty attributes, a quoted newline
	f.Add("name\n")                                                            // a header only
	f.Add("name,\n")                                                           // an empty column name
	f.Add("name,type,type\n")                                                  // a column twice
	f.Add("name\n\"" + strings.Repeat("x", 300) + "\n")                        // an unterminated long field
	f.Fuzz(func(t *testing.T, body string) {
		p, err := thingimport.NewParser(thingimport.FormatCSV, strings.NewReader(body))
		if err != nil {
			var se *thingimport.SyntaxError
			if !errors.As(err, &se) || se.Line < 1 {
				t.Fatalf("header error %v is not a syntax error with a line", err)
			}
			return
		}
		for range 10000 {
			r, err := p.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				var se *thingimport.SyntaxError
				if !errors.As(err, &se) || se.Line < 1 {
					t.Fatalf("error %v is not a syntax error with a line", err)
				}
				return
			}
			if r.Line < 2 {
				t.Fatalf("row at line %d: want 2 or more (after the header)", r.Line)
			}
			_ = registry.CheckNewThing(r.Thing)
		}
	})
}

func FuzzParseJSONL(f *testing.F) {
	f.Add(`{"name":"t1","type":"sensor","attributes":{"a":"b"},"groups":["g"],"credential":"secret"}` + "\n")
	f.Add("{\"name\":1}\n\n{}")
	f.Add(`{"name":"t1"}{"x":1}`)
	f.Add("{\"name\":\"t\\u00e9\",\"credential\":\"none\"}\r\n{\"name\":\"t2\",\"credential\":\"x509\"}\n") // escapes, CRLF, a bad credential
	f.Add(`{"name":"t1","attributes":{"a":{"b":1}}}`)                                                       // a nested attribute
	f.Add(`{"name":null,"groups":null,"tags":[null]}`)                                                      // nulls
	f.Add("\ufeff{\"name\":\"t1\"}\n")                                                                      // a byte order mark
	f.Add(`{"name":"t1"` + "\n" + `}`)                                                                      // an object over two lines
	f.Add("   \n\t\n" + `"just a string"` + "\n")                                                           // blank lines, then no object
	f.Fuzz(func(t *testing.T, body string) {
		p, _ := thingimport.NewParser(thingimport.FormatJSONL, strings.NewReader(body))
		for range 10000 {
			r, err := p.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				var se *thingimport.SyntaxError
				if !errors.As(err, &se) || se.Line < 1 {
					t.Fatalf("error %v is not a syntax error with a line", err)
				}
				return
			}
			if r.Line < 1 {
				t.Fatalf("row at line %d", r.Line)
			}
		}
	})
}

// BenchmarkImport100k imports 100,000 things (CSV: name, type, two
// attributes, a group) into the embedded store, atomically.
func BenchmarkImport100k(b *testing.B) {
	const n = 100_000
	var sb strings.Builder
	sb.WriteString("name,type,attributes.site,attributes.serial,groups\n")
	for i := range n {
		fmt.Fprintf(&sb, "dev-%06d,sensor,plant-%d,SN%08d,plant-1\n", i, i%50, i)
	}
	body := sb.String()
	for b.Loop() {
		b.StopTimer()
		reg, st, _ := newRegistry(b)
		im := thingimport.New(thingimport.Options{Registry: reg})
		b.StartTimer()
		p, _ := thingimport.NewParser(thingimport.FormatCSV, strings.NewReader(body))
		rep, err := im.Import(context.Background(), p, thingimport.Request{})
		if err != nil || rep.Created != n {
			b.Fatalf("import: %v, %d created", err, rep.Created)
		}
		b.StopTimer()
		if c, _, _ := st.Things().Count(context.Background()); c != n {
			b.Fatalf("%d things stored", c)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "things/s")
}
