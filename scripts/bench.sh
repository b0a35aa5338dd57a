#!/usr/bin/env bash
# Runs the MQTT scenarios of docs/benchmarks.md with `mote bench` against one
# broker, RUNS times, restarting the broker before each run (e on its own
# fresh start). Appends one JSON line per scenario run to $OUT/$NAME.jsonl.
# BROKER_CMD must listen on 127.0.0.1:$PORT and be (or exec) the broker
# itself: its PID is given to `mote bench --pid` for CPU and RSS.
#
#   NAME=mote BENCH="--user bench --root things/bench" MOTE_BENCH_PASSWORD=$SECRET \
#     scripts/bench.sh /tmp/mote serve --data-dir $D --mqtt-addr 127.0.0.1:18830 ...
#   NAME=mosquitto scripts/bench.sh /usr/sbin/mosquitto -c ../shared/bench/brokers/mosquitto.conf
#
# Env: NAME (label, default: the command's basename), PORT (18830), RUNS (3),
#      OUT (/tmp/benchres/<UTC date>), ONLY (space-separated scenario names),
#      BENCH (flags for every `mote bench` run), MOTE (the mote binary used as
#      the load generator; default: built from this checkout into /tmp).
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,17p' "$0"; exit 2; }
NAME=${NAME:-$(basename "$1")}
PORT=${PORT:-18830}
RUNS=${RUNS:-3}
OUT=${OUT:-/tmp/benchres/$(date -u +%F)}
ONLY=${ONLY:-}
BENCH=${BENCH:-}
if [ -z "${MOTE:-}" ]; then
	MOTE=/tmp/mote-bench
	(cd "$(dirname "$0")/.." && go build -o "$MOTE" ./cmd/mote)
fi
mkdir -p "$OUT"
LOG=$OUT/$NAME.log
ulimit -n "$(ulimit -Hn)" # 10,000 idle connections need > 10,000 descriptors on both ends

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
if port_open; then echo "bench.sh: 127.0.0.1:$PORT is already in use" >&2; exit 1; fi

BPID=
stop_broker() {
	[ -n "$BPID" ] || return 0
	kill "$BPID" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$BPID" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$BPID" 2>/dev/null || true
	wait "$BPID" 2>/dev/null || true
	BPID=
}
trap stop_broker EXIT INT TERM

start_broker() {
	"$@" >>"$LOG" 2>&1 &
	BPID=$!
	for _ in $(seq 100); do
		port_open && { sleep 1; return 0; }
		kill -0 "$BPID" 2>/dev/null || { echo "bench.sh: the broker exited, see $LOG" >&2; exit 1; }
		sleep 0.1
	done
	echo "bench.sh: the broker did not open 127.0.0.1:$PORT, see $LOG" >&2
	exit 1
}

# scenario LABEL [FLAGS...]: one bounded `mote bench` run.
scenario() {
	local label=$1
	shift
	if [ -n "$ONLY" ] && [[ " $ONLY " != *" $label "* ]]; then return 0; fi
	echo "== $NAME run $run/$RUNS: $label" >&2
	# shellcheck disable=SC2086 # BENCH is a list of flags
	"$MOTE" bench --addr "127.0.0.1:$PORT" --broker "$NAME" --pid "$BPID" --scenario "$label" \
		--timeout 90s --out "$OUT/$NAME.jsonl" "$@" $BENCH >/dev/null || echo "bench.sh: $label failed" >&2
	sleep 1 # let the broker reap the disconnected clients
}

want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

for run in $(seq "$RUNS"); do
	if want e-idle-10k || want f-connect; then
		start_broker "$@"
		scenario e-idle-10k
		stop_broker
		start_broker "$@"
		scenario f-connect
		stop_broker
	fi
	start_broker "$@"
	# Saturation: msgs/s and loss.
	scenario a-fanin-qos0
	scenario b-fanin-qos1
	scenario c-fanout-qos0
	scenario d-pairs-qos1
	# Latency at a fixed offered load (published msgs/s; fan-out delivers 50x).
	scenario a-fanin-qos0@5k --rate 5000 --count 1000000 --duration 5s
	scenario b-fanin-qos1@5k --rate 5000 --count 1000000 --duration 5s
	scenario c-fanout-qos0@500 --rate 500 --count 1000000 --duration 5s
	scenario d-pairs-qos1@5k --rate 5000 --count 1000000 --duration 5s
	stop_broker
done
echo "results: $OUT/$NAME.jsonl" >&2
