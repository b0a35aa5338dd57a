package cli

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// deployDocs are the documents whose mote command lines must name real
// subcommands and flags.
var deployDocs = []string{"../../docs/deploy.md", "../../docs/cluster.md"}

// moteCommand finds a mote invocation in a line of a code block: at the
// start of the line (after environment assignments), after ExecStart= or
// a shell operator, as "mote" or a path ending in "/mote".
var moteCommand = regexp.MustCompile(`(?:^|ExecStart=|&&\s*|\|\s*|\$\()(?:[A-Z_]+=\S*\s+)*(?:\S*/)?mote\s+(.*)$`)

var inlineCode = regexp.MustCompile("`([^`]*)`")

// docCommands returns the mote command lines (arguments after "mote") in
// the fenced code blocks and inline code of doc, continuation lines
// joined.
func docCommands(doc string) [][]string {
	var out [][]string
	add := func(line string) {
		m := moteCommand.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			return
		}
		args := shellWords(m[1])
		if len(args) > 0 {
			out = append(out, args)
		}
	}
	inBlock := false
	var cont string
	var text strings.Builder // outside code blocks, lines joined
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "```") {
			inBlock = !inBlock
			continue
		}
		if !inBlock {
			text.WriteString(line + " ")
			continue
		}
		if before, ok := strings.CutSuffix(line, `\`); ok {
			cont += before + " "
			continue
		}
		add(cont + line)
		cont = ""
	}
	// Inline code, which may wrap: `mote ...`.
	for _, m := range inlineCode.FindAllStringSubmatch(text.String(), -1) {
		add(m[1])
	}
	return out
}

// shellWords splits s like a shell would for plain words and quotes, up
// to a comment, a redirection or another command.
func shellWords(s string) []string {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				w.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case !inWord && strings.ContainsRune("#|&;>)", r):
			return words
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// TestDeployDocCommands: every `mote ...` command shown in docs/deploy.md
// and docs/cluster.md is a real subcommand, and every flag it gives is a
// flag of that subcommand (or a global one).
func TestDeployDocCommands(t *testing.T) {
	root := (&app{env: func(string) (string, bool) { return "", false }}).rootCmd()
	n := 0
	for _, path := range deployDocs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, args := range docCommands(string(b)) {
			n++
			for _, e := range checkDocCommand(root, args) {
				t.Errorf("%s: %s", path, e)
			}
		}
	}
	if n < 8 {
		t.Fatalf("found %d mote commands in %v; want at least 8 (or the extraction is broken)", n, deployDocs)
	}
}

// checkDocCommand returns what is wrong with "mote args...".
func checkDocCommand(root *cobra.Command, args []string) []string {
	line := "mote " + strings.Join(args, " ")
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == root {
		return []string{line + ": no such subcommand"}
	}
	if cmd.HasSubCommands() && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		return []string{line + ": " + cmd.CommandPath() + " has no such subcommand"}
	}
	var errs []string
	for _, a := range rest {
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		var ok bool
		if strings.HasPrefix(a, "--") {
			ok = cmd.Flags().Lookup(name) != nil || cmd.InheritedFlags().Lookup(name) != nil
		} else {
			ok = cmd.Flags().ShorthandLookup(name[:1]) != nil || cmd.InheritedFlags().ShorthandLookup(name[:1]) != nil
		}
		if !ok {
			errs = append(errs, line+": "+cmd.CommandPath()+" has no flag "+a)
		}
	}
	return errs
}

// TestDocCommandsCatchesTypos: the check is not a rubber stamp.
func TestDocCommandsCatchesTypos(t *testing.T) {
	doc := "```sh\nmote serve --data-dir /x \\\n  --clustr nats://h1:4222\nMOTE_STORE=x mote admin tokn\n```\nand `mote admin migrate-store --from a --to b` inline\n"
	cmds := docCommands(doc)
	if len(cmds) != 3 {
		t.Fatalf("docCommands found %q; want 3 commands", cmds)
	}
	root := (&app{env: func(string) (string, bool) { return "", false }}).rootCmd()
	var errs []string
	for _, args := range cmds {
		errs = append(errs, checkDocCommand(root, args)...)
	}
	if len(errs) != 2 || !strings.Contains(errs[0], "--clustr") || !strings.Contains(errs[1], "tokn") {
		t.Fatalf("errors %q; want one for --clustr and one for tokn", errs)
	}
}

// TestDeployDocFlags: every setting docs/deploy.md names in inline code
// (`--store-max-conns`) is a flag of mote serve.
func TestDeployDocFlags(t *testing.T) {
	b, err := os.ReadFile("../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	root := (&app{env: func(string) (string, bool) { return "", false }}).rootCmd()
	serve, _, err := root.Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range regexp.MustCompile("`--([a-z0-9-]+)`").FindAllStringSubmatch(string(b), -1) {
		n++
		if serve.Flags().Lookup(m[1]) == nil {
			t.Errorf("docs/deploy.md names --%s, which is not a flag of mote serve", m[1])
		}
	}
	if n < 3 {
		t.Fatalf("found %d flags in docs/deploy.md; want at least 3", n)
	}
}
