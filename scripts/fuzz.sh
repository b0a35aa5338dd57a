#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME (default 30s) each.
#   scripts/fuzz.sh                 # all targets
#   FUZZTIME=5m scripts/fuzz.sh ./internal/policy
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
