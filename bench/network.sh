#!/usr/bin/env bash
# network.sh: peercdn swarm --network for each preset and swarm size, each
# beside its CDN-only baseline, against one `peercdn serve --demo` on
# loopback. Summaries go to bench/out/network-<preset>-<viewers>.json, and a
# table (bench/network-table.py) to stdout.
#   PRESETS="fiber cable dsl cellular mixed" SIZES="10 50" SECONDS_RUN=120 bench/network.sh
# The stream is the field harness's (bench/field.sh): 120 s, its 360p
# rendition at about 0.9 Mbit/s, which the presets' uplinks are drawn
# against (cellular and a fifth of mixed below it, cable at 3x and more).
# STREAM=builtin plays the demo's own 60 s sample (180p, about 0.2 Mbit/s).
# PROFILE=1 writes each run's CPU profile beside its summary.
# BASELINE_AFTER=1 runs each baseline after its swarm, not beside it: 200
# viewers beside 200 more starve two cores, and both stall.
# REPEAT=N runs each preset and size N times (network-<preset>-<viewers>-rK.json)
# and adds their mean and spread: one build's mixed x 50 offload moved
# 0.55-0.61 from run to run, so one run decides nothing within that.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESETS=${PRESETS:-"fiber cable dsl cellular mixed"}
SIZES=${SIZES:-"10 50 200"}
SECS=${SECONDS_RUN:-120}
ADDR=127.0.0.1:18400
OUTDIR=${OUT:-bench/out}
mkdir -p "$OUTDIR"
STREAM=${STREAM:-$PWD/bench/out/field-stream}
rendition=1
if [ "$STREAM" = builtin ]; then
	STREAM="" rendition=0
elif [ ! -f "$STREAM/master.m3u8" ]; then
	OUT="$STREAM" SECONDS_LONG=120 AUDIO=64k RENDITIONS="240p 426x240 400k
360p 640x360 800k" examples/make-stream.sh >&2
fi
# Every simulated viewer comes from 127.0.0.1: the per-address limits,
# which are for one household or office, are lifted.
${BIN:-bin/peercdn} serve --demo ${STREAM:+--demo-stream "$STREAM"} --listen "$ADDR" --stun-listen= \
	--max-conns-per-ip 100000 --ip-messages-per-second 1000000 --ip-message-burst 1000000 2>/dev/null &
SERVE=$!
trap 'kill $SERVE' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR#*:}") 2>/dev/null && break; sleep 0.1; done
outs=()
REPEAT=${REPEAT:-1}
for size in $SIZES; do
	for preset in $PRESETS; do
		# Viewers join over a tenth of a second each (20 s for 200), then
		# SECS are measured.
		spread=$(( size / 10 ))
		for rep in $(seq "$REPEAT"); do
			out=$OUTDIR/network-$preset-$size.json
			[ "$REPEAT" -gt 1 ] && out=$OUTDIR/network-$preset-$size-r$rep.json
			outs+=("$out")
			echo "$preset x $size ($SECS s after joins over ${spread}s) -> $out" >&2
			${BIN:-bin/peercdn} swarm --tracker "ws://$ADDR/ws" --network "$preset" --viewers "$size" --rendition "$rendition" \
				--join-spread "${spread}s" --seconds $(( SECS + spread )) ${PROFILE:+--cpuprofile "${out%.json}.pprof"} ${BASELINE_AFTER:+--baseline-after} --json > "$out"
		done
	done
done
python3 bench/network-table.py "${outs[@]}"
