package rules

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden")

// TestGolden parses each testdata/golden/*.sql and compares the canonical
// form, the output columns and the AST as an S-expression (which shows
// the structure that precedence gave) with the .golden file. Run with
// -update to rewrite the .golden files.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/golden/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			sql, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := golden(string(sql))
			goldenFile := strings.TrimSuffix(file, ".sql") + ".golden"
			if *update {
				if err := os.WriteFile(goldenFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenFile)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s:\n%s\nwant (%s):\n%s", file, got, goldenFile, want)
			}
		})
	}
}

func golden(sql string) string {
	s, err := Parse(sql)
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	var b strings.Builder
	b.WriteString(s.String())
	b.WriteString("\n\ncolumns: ")
	b.WriteString(strings.Join(s.Columns(), ", "))
	b.WriteString("\nfrom: ")
	b.WriteString(s.Topic())
	b.WriteString("\nselect:\n")
	for _, it := range s.ast.items {
		b.WriteString("  ")
		if it.x == nil {
			b.WriteString("*\n")
			continue
		}
		b.WriteString(it.name)
		b.WriteString(": ")
		b.WriteString(sexpr(it.x))
		b.WriteByte('\n')
	}
	if s.ast.where != nil {
		b.WriteString("where: ")
		b.WriteString(sexpr(s.ast.where))
		b.WriteByte('\n')
	}
	if w, ok := s.Window(); ok {
		fmt.Fprintf(&b, "window: length %v, hop %v, sliding %v\n", w.Length, w.Hop, w.Sliding)
		for _, k := range s.ast.group.keys {
			b.WriteString("group: " + sexpr(k) + "\n")
		}
	}
	if s.ast.having != nil {
		b.WriteString("having: " + sexpr(s.ast.having) + "\n")
	}
	return b.String()
}

// sexpr prints an expression fully parenthesized, operator first.
func sexpr(e expr) string {
	var b strings.Builder
	writeSexpr(&b, e)
	return b.String()
}

func writeSexpr(b *strings.Builder, e expr) {
	list := func(head string, xs ...expr) {
		b.WriteString("(" + head)
		for _, x := range xs {
			b.WriteByte(' ')
			writeSexpr(b, x)
		}
		b.WriteByte(')')
	}
	switch e := e.(type) {
	case *literal:
		e.write(b)
	case *starExpr:
		b.WriteString("*")
	case *pathExpr:
		b.WriteString("(path ")
		if e.base == nil {
			b.WriteString("$")
		} else {
			writeSexpr(b, e.base)
		}
		for _, s := range e.steps {
			if s.index == nil {
				b.WriteString(" .")
				writeIdent(b, s.key)
			} else {
				b.WriteString(" [")
				writeSexpr(b, s.index)
				b.WriteString("]")
			}
		}
		b.WriteByte(')')
	case *unaryExpr:
		if e.op == "-" {
			list("neg", e.x)
		} else {
			list("NOT", e.x)
		}
	case *binaryExpr:
		list(e.op, e.l, e.r)
	case *isNullExpr:
		if e.not {
			list("IS-NOT-NULL", e.x)
		} else {
			list("IS-NULL", e.x)
		}
	case *inExpr:
		head := "IN"
		if e.not {
			head = "NOT-IN"
		}
		list(head, append([]expr{e.x}, e.list...)...)
	case *betweenExpr:
		head := "BETWEEN"
		if e.not {
			head = "NOT-BETWEEN"
		}
		list(head, e.x, e.lo, e.hi)
	case *caseExpr:
		b.WriteString("(CASE")
		if e.operand != nil {
			b.WriteByte(' ')
			writeSexpr(b, e.operand)
		}
		for _, w := range e.whens {
			b.WriteByte(' ')
			list("WHEN", w.cond, w.result)
		}
		if e.els != nil {
			b.WriteByte(' ')
			list("ELSE", e.els)
		}
		b.WriteByte(')')
	case *callExpr:
		list(e.name+"()", e.args...)
	case *aggExpr:
		if e.arg == nil {
			b.WriteString("(" + e.name + "# *)")
		} else {
			list(e.name+"#", e.arg)
		}
	case *windowFnExpr:
		b.WriteString("(" + e.name + "#)")
	case *castExpr:
		list("CAST", e.x)
		s := b.String()
		b.Reset()
		b.WriteString(s[:len(s)-1] + " " + castTypeNames[e.typ] + ")")
	default:
		b.WriteString("?")
	}
}
