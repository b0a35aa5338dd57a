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
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-30s}
pkgs=${*:-./...}
for pkg in $(go list $pkgs); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "== fuzz $pkg $target ($FUZZTIME)"
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg"
	done
done
