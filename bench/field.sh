#!/usr/bin/env bash
# field.sh: the field harness (e2e/field_test.go) over the runs an
# independent harness compared peercdn and p2p-media-loader on: hls.js
# viewers (a bare page on the site's origin, hls.js with enableWorker
# false) in one headless Chromium, joining GAP apart, with plain hls.js
# viewers joining among them in the same run; a CDN on its own port, 30 ms
# away, publishing no hash manifest; `peercdn serve` with its defaults.
# One JSON line per run goes to bench/out/field.jsonl, and a table to
# stdout.
#   RUNS="live vod live-slow live-abr" VIEWERS=6 WINDOW=90s bench/field.sh
# A run name ending in -digest (live-digest, live-slow-digest) has the CDN
# publish each segment's SHA-256, which the tracker's notary reads instead
# of fetching a copy.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-"live vod live-slow"}
OUT=$PWD/bench/out/field.jsonl
mkdir -p bench/out
: > "$OUT"
# The stream, shaped as the outside harness's: 120 s, 640x360 at 800 kbit/s
# and 426x240 at 400 kbit/s, 64 kbit/s audio, 2 s segments (ffmpeg).
# STREAM=builtin runs on the demo's own 60 s sample instead.
STREAM=${STREAM:-$PWD/bench/out/field-stream}
if [ "$STREAM" != builtin ] && [ ! -f "$STREAM/master.m3u8" ]; then
	OUT="$STREAM" SECONDS_LONG=120 AUDIO=64k RENDITIONS="240p 426x240 400k
360p 640x360 800k" examples/make-stream.sh >&2
fi
[ "$STREAM" = builtin ] && STREAM=""
for run in $RUNS; do
	view=${run%%-*}
	kbps=0
	level=1 # one rendition, as the outside harness's first runs
	args=${FIELD_ARGS:-}
	case $run in
	*-digest*) args="$args --demo-cdn-digest" ;; # the CDN publishes each segment's SHA-256: the notary reads it, no copy
	esac
	case $run in
	*-slow*) kbps=1200; level="" ;; # the CDN at 1.2 Mbit/s per response, 2 renditions, ABR on
	*-abr*) level="" ;;             # 2 renditions, ABR on
	esac
	echo "== $run" >&2
	FIELD=1 FIELD_ARGS="$args" FIELD_OUT="$OUT" FIELD_STREAM="$STREAM" FIELD_VIEW="$view" FIELD_CDN_KBPS="$kbps" FIELD_LEVEL="$level" \
		FIELD_VIEWERS="${VIEWERS:-6}" FIELD_PLAIN="${PLAIN:-3}" FIELD_GAP="${GAP:-2s}" FIELD_WINDOW="${WINDOW:-90s}" \
		go test -tags e2e -count=1 -timeout 20m -run '^TestField$' -v ./e2e | grep -E 'field_test|^--- ' >&2
done
# The table: offload from the pages and at the CDN (notary fetches
# included), startup medians, rebuffers, ABR estimates.
python3 - "$OUT" <<'PY'
import json, statistics, sys
print("| run | viewers | offload (pages) | offload (CDN) | startup p50 peercdn / plain | rebuffers peercdn / plain | ABR estimate p50 peercdn / plain (Mbit/s) | renditions | main thread p50 peercdn / plain (s) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for line in open(sys.argv[1]):
    r = json.loads(line)
    name = r["View"] + (", CDN %s kbps" % r["CDNKbps"] if r["CDNKbps"] != "0" else "") + (", ABR" if r["Level"] == "" else "") + \
        (", digests" if "--demo-cdn-digest" in r.get("Args", "") else "")
    med = lambda xs: statistics.median(xs) if xs else 0
    print("| %s | %d + %d plain | %.1f%% | %.1f%% | %.0f / %.0f ms | %d / %d | %.2f / %.2f | %s | %.1f / %.1f |" % (
        name, r["Viewers"], r["Plain"], 100 * r["Offload"], 100 * r["CDNOffload"], r["StartupMs"], r["PlainStartupMs"],
        r["Rebuffers"], r["PlainRebuffers"], med(r["BandwidthMbps"]), med(r["PlainBandwidthMbps"]),
        ",".join(str(l) for l in sorted(set(r["Levels"]))), med(r.get("MainThreadS") or []), med(r.get("PlainMainThreadS") or [])))
# Startup pooled over the runs of each kind: a run's medians are of 6 and 3
# viewers, and moved 30-40% from run to run for either kind.
pooled = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    k = pooled.setdefault((r["View"], r["CDNKbps"], r["Level"]), [[], [], 0])
    k[0] += r.get("StartupsMs") or []
    k[1] += r.get("PlainStartupsMs") or []
    k[2] += 1
for (view, kbps, level), (p, q, n) in pooled.items():
    if n > 1 and p and q:
        print("\nstartup over %d runs of %s%s: peercdn %.0f ms (%d viewers), plain %.0f ms (%d), ratio %.2f" % (
            n, view, ", CDN %s kbps" % kbps if kbps != "0" else "", statistics.median(p), len(p), statistics.median(q), len(q),
            statistics.median(p) / statistics.median(q)))
PY
