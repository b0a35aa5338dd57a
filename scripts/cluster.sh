#!/usr/bin/env bash
# cluster.sh starts a Mote cluster on this machine to try it: three
# nats-server nodes in one NATS cluster (JetStream on), three Mote nodes and
# one PostgreSQL. Everything lives in a temporary directory and stops with
# Ctrl-C. See docs/cluster.md.
#
#   scripts/cluster.sh                      # its own PostgreSQL (initdb; not as root)
#   MOTE_STORE=postgres://u:p@h/db scripts/cluster.sh   # an existing database
#
# nats-server is built from the Go module Mote already depends on (no
# download beyond the Go module proxy); PostgreSQL comes from the system
# (apt-get install postgresql) unless MOTE_STORE is set.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d -t mote-cluster.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [[ -n "${pgbin:-}" ]]; then "$pgbin/pg_ctl" -D "$dir/pg" -m fast stop >/dev/null 2>&1 || true; fi
	echo "stopped; files in $dir"
}
trap cleanup EXIT

echo "building mote and nats-server into $dir ..."
go build -o "$dir/mote" ./cmd/mote
go build -o "$dir/nats-server" github.com/nats-io/nats-server/v2

store=${MOTE_STORE:-}
if [[ -z "$store" ]]; then
	if [[ $(id -u) == 0 ]]; then
		echo "PostgreSQL does not run as root: set MOTE_STORE=postgres://... or run as another user" >&2
		exit 1
	fi
	pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
	[[ -x "$pgbin/initdb" ]] || pgbin=$(dirname "$(command -v initdb || echo /nonexistent/initdb)")
	if [[ ! -x "$pgbin/initdb" ]]; then
		echo "PostgreSQL not found: apt-get install postgresql, or set MOTE_STORE=postgres://..." >&2
		exit 1
	fi
	"$pgbin/initdb" -D "$dir/pg" -U mote --auth=trust >/dev/null
	"$pgbin/pg_ctl" -D "$dir/pg" -o "-p 55432 -k $dir -c listen_addresses=127.0.0.1" -l "$dir/pg.log" -w start >/dev/null
	"$pgbin/createdb" -h 127.0.0.1 -p 55432 -U mote mote
	store="postgres://mote@127.0.0.1:55432/mote?sslmode=disable"
fi

routes="nats://127.0.0.1:6248,nats://127.0.0.1:6249,nats://127.0.0.1:6250"
for i in 0 1 2; do
	"$dir/nats-server" -n "nats-$i" -a 127.0.0.1 -p $((4222 + i)) --cluster_name mote \
		--cluster "nats://127.0.0.1:$((6248 + i))" --routes "$routes" -js -sd "$dir/nats-$i" \
		>"$dir/nats-$i.log" 2>&1 &
	pids+=($!)
done
nats="nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"

start_node() { # i
	local i=$1
	"$dir/mote" serve --data-dir "$dir/node-$i" --store "$store" --cluster "$nats" --node-id "node-$i" \
		--mqtt-addr "127.0.0.1:$((1883 + i))" --mqtts-addr "" --http-addr "127.0.0.1:$((8080 + i))" --https-addr "" \
		--coap-addr "" --coaps-addr "" \
		>"$dir/node-$i.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		curl -fs "http://127.0.0.1:$((8080 + i))/readyz" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	echo "node-$i did not start; its log:" >&2
	cat "$dir/node-$i.log" >&2
	exit 1
}
start_node 0
# The other nodes share the first one's keys (docs/cluster.md).
for i in 1 2; do
	mkdir -p "$dir/node-$i"
	cp -r "$dir/node-0/secret.key" "$dir/node-0/seal.key" "$dir/node-0/pki" "$dir/node-$i/"
	for f in files.key artifact-url.key; do [[ -e "$dir/node-0/$f" ]] && cp "$dir/node-0/$f" "$dir/node-$i/"; done
	start_node "$i"
done

cat <<MSG

Mote cluster up (files and logs in $dir):
  MQTT  127.0.0.1:1883 (node-0), :1884 (node-1), :1885 (node-2)
  HTTP  http://127.0.0.1:8080 (node-0), :8081, :8082
  NATS  $nats
  store $store
The first admin token and console password are in $dir/node-0.log.
Ctrl-C stops everything.
MSG
wait
