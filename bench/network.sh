#!/usr/bin/env bash
# network.sh: peercdn swarm --network for each preset and swarm size, each
# beside its CDN-only baseline, against one `peercdn serve --demo` on
# loopback. Summaries go to bench/out/network-<preset>-<viewers>.json.
#   PRESETS="fiber cable dsl cellular mixed" SIZES="10 50" SECONDS_RUN=60 bench/network.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PRESETS=${PRESETS:-"fiber cable dsl cellular mixed"}
SIZES=${SIZES:-"10 50 200"}
SECS=${SECONDS_RUN:-120}
ADDR=127.0.0.1:18400
mkdir -p "${OUT:-bench/out}"
# Every simulated viewer comes from 127.0.0.1: the per-address limits,
# which are for one household or office, are lifted.
${BIN:-bin/peercdn} serve --demo --listen "$ADDR" --stun-listen= --max-conns-per-ip 100000 \
	--ip-messages-per-second 1000000 --ip-message-burst 1000000 2>/dev/null &
SERVE=$!
trap 'kill $SERVE' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR#*:}") 2>/dev/null && break; sleep 0.1; done
for size in $SIZES; do
	for preset in $PRESETS; do
		# Viewers join over a tenth of a second each (20 s for 200), then
		# SECS are measured.
		spread=$(( size / 10 ))
		out=${OUT:-bench/out}/network-$preset-$size.json
		echo "$preset x $size ($SECS s after joins over ${spread}s) -> $out" >&2
		${BIN:-bin/peercdn} swarm --tracker "ws://$ADDR/ws" --network "$preset" --viewers "$size" \
			--join-spread "${spread}s" --seconds $(( SECS + spread )) --json > "$out"
	done
done
