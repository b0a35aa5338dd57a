#!/usr/bin/env bash
# bench-import.sh BINARY [RUNS] — bulk import on the real path
# (docs/benchmarks.md#bulk-import-of-things): a fresh `mote serve` per run
# (embedded SQLite, loopback), then POST /api/v1/things:import of N things
# (default 100,000; CSV: name, type, two attributes, a group) with curl.
# Prints per run: the answer's wall time, things/s, the server's CPU
# seconds during the request, and the CPU it spent afterwards until idle
# (the fleet index catching up). Needs curl and python3.
set -euo pipefail
BIN=${1:?usage: bench-import.sh BINARY [RUNS]}
RUNS=${2:-${RUNS:-3}}
N=${N:-100000}
PORT=${PORT:-18089}
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$N" > "$work/things.csv" <<'PY'
import sys
n = int(sys.argv[1])
out = ["name,type,attributes.site,attributes.serial,groups"]
out += ["dev-%06d,sensor,plant-%d,SN%08d,plant-1" % (i, i % 50, i) for i in range(n)]
print("\n".join(out))
PY

cpu() { # utime+stime of a process, in clock ticks
	awk '{print $14 + $15}' "/proc/$1/stat"
}
tck=$(getconf CLK_TCK)

for run in $(seq 1 "$RUNS"); do
	d="$work/data-$run"
	mkdir -p "$d"
	"$BIN" serve --data-dir "$d" --http-addr "127.0.0.1:$PORT" --mqtt-addr 127.0.0.1:0 --mqtts-addr "" \
		--https-addr "" --coap-addr "" --coaps-addr "" > "$work/serve-$run.log" 2>&1 &
	pid=$!
	api="http://127.0.0.1:$PORT/api/v1"
	for _ in $(seq 1 300); do
		curl -fs -o /dev/null "http://127.0.0.1:$PORT/metrics" && break
		sleep 0.1
	done
	tok=$("$BIN" admin token --data-dir "$d" 2>/dev/null | tail -1)
	curl -fs -o /dev/null -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' -d '{"name":"sensor"}' "$api/types"
	curl -fs -o /dev/null -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' -d '{"name":"plant-1"}' "$api/groups"
	c0=$(cpu "$pid")
	t=$(curl -s -o "$work/report-$run.json" -w '%{time_total}' -H "Authorization: Bearer $tok" -H 'Content-Type: text/csv' \
		--data-binary @"$work/things.csv" "$api/things:import")
	c1=$(cpu "$pid")
	created=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["created"])' "$work/report-$run.json")
	# Afterwards: until the server used less than 2% of a core over a second (at most 120 s).
	prev=$c1
	for _ in $(seq 1 120); do
		sleep 1
		now=$(cpu "$pid")
		[ $((now - prev)) -lt $((tck / 50 + 1)) ] && break
		prev=$now
	done
	c2=$(cpu "$pid")
	python3 - "$run" "$t" "$created" "$c0" "$c1" "$c2" "$tck" <<'PY'
import sys
run, t, created, c0, c1, c2, tck = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
print("run %s: %d created in %.2f s = %d things/s; server CPU %.2f s during the request (%.0f us/thing), %.2f s after it" %
      (run, created, t, created / t, (c1 - c0) / tck, (c1 - c0) / tck / max(created, 1) * 1e6, (c2 - c1) / tck))
PY
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pid=
done
