#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (default 30s).
#   scripts/fuzz.sh                        # all targets, 30 s each
#   FUZZTIME=5m scripts/fuzz.sh ./internal/policy
#   FUZZTIME=20000x scripts/fuzz.sh        # a count of executions instead
#
# CI uses a count. With a duration, Go 1.26's fuzz coordinator can report a
# spurious "context deadline exceeded" failure right as the time runs out,
# without any failing input (golang/go#75804, fixed in Go 1.27). A count
# has no deadline to race. A real failure always writes its input under the
# package's testdata/fuzz/<target>/, which `go test` then replays.
#
# Each package's test binary is built once, with the fuzzing
# instrumentation (go test -c -fuzz), and run once per target from the
# package's directory, so that the seeds under testdata/fuzz are read and a
# failing input is written there: `go test -fuzz` per target would re-link
# the binary every time (about 5 s each, most of a short pass).
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-30s}
pkgs=${*:-./...}
bindir=$(mktemp -d)
trap 'rm -rf "$bindir"' EXIT
cache=$(go env GOCACHE)/fuzz
# The packages with fuzz targets, as "importpath dir".
list=$bindir/packages
go list -f '{{.ImportPath}} {{.Dir}}' $pkgs | while read -r pkg dir; do
	if grep -qs '^func Fuzz' "$dir"/*_test.go; then echo "$pkg $dir"; fi
done >"$list"
# Their instrumented test binaries, built two at a time (linking is
# single-threaded; FUZZBUILDS sets how many).
cut -d' ' -f1 "$list" | xargs -P "${FUZZBUILDS:-2}" -I{} sh -c \
	'go test -c -fuzz=. -o "$1/$(echo "$2" | tr / _).test" "$2"' _ "$bindir" {}
# Then every target, one at a time (each fuzzes on every core).
while read -r pkg dir; do
	bin="$bindir/$(echo "$pkg" | tr / _).test"
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | sort -u); do
		echo "== fuzz $pkg $target ($FUZZTIME)"
		(cd "$dir" && "$bin" -test.run='^$' -test.fuzz="^${target}\$" -test.fuzztime="$FUZZTIME" \
			-test.fuzzcachedir="$cache/$pkg" -test.timeout=10m) </dev/null
	done
done <"$list"
