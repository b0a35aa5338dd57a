#!/usr/bin/env bash
# bench-cluster.sh measures one Mote node against three (docs/cluster.md,
# "1 node vs 3"): QoS 1 fan-in (50 → 1) and QoS 1 pairs (100 × 1 → 1) with
# `mote bench`, saturated (msgs/s) and at a fixed rate (p50/p99 latency),
# RUNS times each on a freshly started topology:
#
#   1node   one Mote node on PostgreSQL, no cluster
#   3nodes  three nats-server nodes (one NATS cluster, JetStream on) and
#           three Mote nodes on the same PostgreSQL; the load generator
#           spreads its connections over the three (subscriber i on the node
#           after publisher i's: every pairs message and 2/3 of the fan-in
#           messages cross nodes)
#
# Besides `mote bench`'s JSON lines it records the CPU every Mote and NATS
# process used during each run (from /proc) and the load average, so the
# cost per message can be compared although 2 cores cannot show a speed-up.
#
#   scripts/bench-cluster.sh                     # its own PostgreSQL (initdb)
#   MOTE_STORE=postgres://u:p@h/db scripts/bench-cluster.sh
#
# Env: RUNS (3), OUT (/tmp/benchres/cluster-<UTC date>), ONLY (1node or
#      3nodes), RATE (fixed-rate runs, msgs/s: 5000), MOTE_STORE (an
#      existing, empty database).
# Needs: go, curl, PostgreSQL's initdb/pg_ctl (unless MOTE_STORE). As root,
# PostgreSQL runs as the user postgres (or nobody).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
RATE=${RATE:-5000}
OUT=${OUT:-/tmp/benchres/cluster-$(date -u +%F)}
ONLY=${ONLY:-}
mkdir -p "$OUT"
dir=$(mktemp -d -t mote-bench-cluster.XXXXXX)
pids=()
pgbin=
pguser=
stop_all() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	pids=()
}
pg() { if [[ -n "$pguser" ]]; then runuser -u "$pguser" -- "$@"; else "$@"; fi; }
cleanup() {
	stop_all
	if [[ -n "$pgbin" ]]; then pg "$pgbin/pg_ctl" -D "$dir/pg" -m fast stop >/dev/null 2>&1 || true; fi
	echo "results in $OUT; files in $dir" >&2
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

echo "building mote and nats-server into $dir ..." >&2
go build -o "$dir/mote" ./cmd/mote
go build -o "$dir/nats-server" github.com/nats-io/nats-server/v2
MOTE=$dir/mote

store=${MOTE_STORE:-}
if [[ -z "$store" ]]; then
	pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
	[[ -x "$pgbin/initdb" ]] || pgbin=$(dirname "$(command -v initdb || echo /nonexistent/initdb)")
	if [[ ! -x "$pgbin/initdb" ]]; then
		echo "PostgreSQL not found: apt-get install postgresql, or set MOTE_STORE=postgres://..." >&2
		exit 1
	fi
	if [[ $(id -u) == 0 ]]; then
		pguser=postgres
		id -u postgres >/dev/null 2>&1 || pguser=nobody
		mkdir -p "$dir/pg" && chown "$pguser" "$dir/pg" && chmod 755 "$dir"
	fi
	pg "$pgbin/initdb" -D "$dir/pg" -U mote --auth=trust >/dev/null
	pg "$pgbin/pg_ctl" -D "$dir/pg" -o "-p 55433 -k /tmp -c listen_addresses=127.0.0.1" -l "$dir/pg/log" -w start >/dev/null
	pg "$pgbin/createdb" -h 127.0.0.1 -p 55433 -U mote mote
	store="postgres://mote@127.0.0.1:55433/mote?sslmode=disable"
fi

# Ports: MQTT 28830+i, HTTP 28080+i, NATS 24222+i (routes 26248+i).
nats="nats://127.0.0.1:24222,nats://127.0.0.1:24223,nats://127.0.0.1:24224"
start_nats() {
	local routes="nats://127.0.0.1:26248,nats://127.0.0.1:26249,nats://127.0.0.1:26250" i
	for i in 0 1 2; do
		rm -rf "$dir/nats-$i"
		"$dir/nats-server" -n "nats-$i" -a 127.0.0.1 -p $((24222 + i)) --cluster_name mote \
			--cluster "nats://127.0.0.1:$((26248 + i))" --routes "$routes" -js -sd "$dir/nats-$i" \
			>>"$dir/nats-$i.log" 2>&1 &
		pids+=($!)
	done
}
start_node() { # i cluster(0/1)
	local i=$1 cl=()
	[[ $2 == 1 ]] && cl=(--cluster "$nats" --node-id "node-$i")
	"$MOTE" serve --data-dir "$dir/node-$i" --store "$store" "${cl[@]}" \
		--mqtt-addr "127.0.0.1:$((28830 + i))" --mqtts-addr "" --http-addr "127.0.0.1:$((28080 + i))" \
		--https-addr "" --coap-addr "" --coaps-addr "" --device-rate-limit 0 \
		>>"$dir/node-$i.log" 2>&1 &
	pids+=($!)
	[[ $i == 0 ]] && node0=$!
	for _ in $(seq 150); do
		curl -fs "http://127.0.0.1:$((28080 + i))/readyz" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	echo "node-$i did not start; its log:" >&2
	tail -30 "$dir/node-$i.log" >&2
	exit 1
}

# Once: start node 0 alone to create the keys, the admin token and the
# thing "bench" with a secret; the other nodes get node 0's keys.
start_node 0 0
token=$(grep -o 'MOTE_TOKEN=[^ ]*' "$dir/node-0.log" | head -1 | cut -d= -f2)
[[ -n "$token" ]] || { echo "no admin token in $dir/node-0.log (is the database empty?)" >&2; exit 1; }
export MOTE_SERVER=http://127.0.0.1:28080 MOTE_TOKEN=$token
"$MOTE" thing create bench >/dev/null
secret=$("$MOTE" cred create bench --type secret -o json | grep -o '"secret": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/')
[[ -n "$secret" ]] || { echo "could not create a secret for the thing bench" >&2; exit 1; }
export MOTE_BENCH_PASSWORD=$secret
stop_all
for i in 1 2; do
	mkdir -p "$dir/node-$i"
	cp -r "$dir/node-0/secret.key" "$dir/node-0/seal.key" "$dir/node-0/pki" "$dir/node-$i/"
	for f in files.key artifact-url.key; do [[ -e "$dir/node-0/$f" ]] && cp "$dir/node-0/$f" "$dir/node-$i/"; done
done

# cpu_ticks: user+system clock ticks of the running Mote and NATS processes.
cpu_ticks() {
	local p t=0 s
	for p in "${pids[@]}"; do
		s=$(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null) || continue
		t=$((t + ${s% *} + ${s#* }))
	done
	echo "$t"
}
hz=$(getconf CLK_TCK)

# scenario TOPOLOGY LABEL [FLAGS...]: one `mote bench` run, plus a line in
# cpu.jsonl: CPU seconds of the Mote and NATS processes during the run,
# CPU microseconds per delivered message, and the load average after it.
scenario() {
	local topo=$1 label=$2 addrs line before after recv
	shift 2
	addrs="127.0.0.1:28830"
	[[ $topo == 3nodes ]] && addrs="127.0.0.1:28830,127.0.0.1:28831,127.0.0.1:28832"
	echo "== $topo run $run/$RUNS: $label" >&2
	before=$(cpu_ticks)
	line=$("$MOTE" bench --addr "$addrs" --broker "mote-$topo" --pid "$node0" --scenario "$label" \
		--user bench --root things/bench --timeout 90s --out "$OUT/bench.jsonl" "$@") || { echo "$label failed" >&2; return 0; }
	after=$(cpu_ticks)
	recv=$(grep -o '"received":[0-9]*' <<<"$line" | cut -d: -f2)
	awk -v t="$topo" -v l="$label" -v r="$run" -v c=$((after - before)) -v hz="$hz" -v n="${recv:-0}" \
		-v la="$(cut -d' ' -f1-3 /proc/loadavg)" \
		'BEGIN { printf "{\"broker\":\"mote-%s\",\"scenario\":\"%s\",\"run\":%d,\"cpu_s\":%.2f,\"received\":%d,\"cpu_us_per_msg\":%.2f,\"loadavg\":\"%s\"}\n", t, l, r, c/hz, n, (n ? c/hz*1e6/n : 0), la }' \
		>>"$OUT/cpu.jsonl"
	sleep 1
}

for run in $(seq "$RUNS"); do
	for topo in 1node 3nodes; do
		[[ -z "$ONLY" || "$ONLY" == "$topo" ]] || continue
		if [[ $topo == 1node ]]; then
			start_node 0 0
		else
			start_nats
			for i in 0 1 2; do start_node "$i" 1; done
		fi
		scenario "$topo" b-fanin-qos1
		scenario "$topo" d-pairs-qos1
		scenario "$topo" "b-fanin-qos1@$RATE" --rate "$RATE" --count 1000000 --duration 5s
		scenario "$topo" "d-pairs-qos1@$RATE" --rate "$RATE" --count 1000000 --duration 5s
		if [[ $topo == 3nodes ]]; then # what the relay delivered and dropped in this run's four scenarios
			for i in 0 1 2; do
				curl -fs -H "Authorization: Bearer $token" "http://127.0.0.1:$((28080 + i))/metrics" |
					grep -E '^mote_(cluster_relay|bus_nats_dropped)' | sed "s/^/run $run node-$i /" >>"$OUT/relay-metrics.txt" || true
			done
		fi
		stop_all
	done
done

"$MOTE" bench report "$OUT/bench.jsonl"
echo >&2
echo "CPU of the Mote and NATS processes per delivered message (median of $RUNS, µs):" >&2
sort "$OUT/cpu.jsonl" | awk -F'"' '{
	b=$4; s=$8; match($0, /"cpu_us_per_msg":[0-9.]+/); v=substr($0, RSTART+17, RLENGTH-17)
	k=b" "s; n[k]++; vals[k, n[k]]=v
} END {
	for (k in n) { m=n[k]; for (i=1;i<=m;i++) a[i]=vals[k,i]
		for (i=1;i<=m;i++) for (j=i+1;j<=m;j++) if (a[j]+0 < a[i]+0) { x=a[i]; a[i]=a[j]; a[j]=x }
		printf "  %-14s %-22s %s\n", substr(k,1,index(k," ")-1), substr(k,index(k," ")+1), a[int((m+1)/2)] }
}' | sort
