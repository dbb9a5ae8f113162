#!/usr/bin/env bash
# How `peercdn serve` grows from 5k to 10k to 19k WebSocket connections (the
# per-process open-file limit here is 20k), in the realistic mode: joins at
# 500 a second, two generator processes. Results: $OUT/scale-N.json and the
# summaries on stdout. Run by `make bench-scale`.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
for conns in ${SCALE_CONNS:-5000 10000 19000}; do
	$BIN serve --listen 127.0.0.1:8090 --max-conns-per-ip 64 >"$OUT/peercdn-scale.log" 2>&1 &
	server_pid=$!
	wait_port 8090
	sleep 1
	echo "== scale: $conns connections"
	$BIN bench tracker --url ws://127.0.0.1:8090/announce --mode realistic --conns "$conns" --procs 2 \
		--storm "$((conns / 500))s" --seconds "${SECONDS_WINDOW:-30}" --server-pid "$server_pid" --json >"$OUT/scale-$conns.json"
	$BIN bench tracker --summary "$OUT/scale-$conns.json"
	stop
	sleep 2
done
