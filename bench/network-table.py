#!/usr/bin/env python3
"""network-table.py: the markdown table of bench/network.sh's summaries
(bench/out/network-<preset>-<viewers>.json), one row per file given, and
for a preset and size run more than once (REPEAT), the runs' mean and range."""
import json
import sys

print("| preset | viewers | offload | of the limit | stalls, ms (CDN alone) | startup p50 ms (CDN alone) | CDN copies per segment | failed connections (by NAT) | abandoned to the CDN | P2P bytes wasted |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
runs = {}
for f in sys.argv[1:]:
    d = json.load(open(f))
    b = d.get("baseline") or {}
    n = d["viewers"]
    lim = d.get("limit") or (n - 1) / n
    nat = d.get("peersFailedByNat") or {}
    failed = "{:,}".format(d["peersFailed"])
    if nat:
        failed += " (" + ", ".join("%s %s" % ("{:,}".format(v), k) for k, v in sorted(nat.items())) + ")"
    print("| %s | %d | %.3f | %.0f%% | %d, %d (%d, %d) | %d (%d) | %.2f | %s | %d | %.1f MB |" % (
        d.get("network", "?"), n, d["offload"], 100 * d["offload"] / lim,
        d["stalls"], d["stallMs"], b.get("stalls", 0), b.get("stallMs", 0),
        d["startupMs"], b.get("startupMs", 0), d.get("cdnCopies", 0), failed,
        d.get("abandoned", 0), d.get("wastedBytes", 0) / 1e6))
    runs.setdefault((d.get("network", "?"), n), []).append((d["offload"], lim, d["stalls"] - b.get("stalls", 0)))

if any(len(v) > 1 for v in runs.values()):
    print()
    print("| preset | viewers | runs | offload mean (range) | of the limit, mean | stalls beyond the CDN alone |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (net, n), v in runs.items():
        offs = [o for o, _, _ in v]
        mean = sum(offs) / len(offs)
        print("| %s | %d | %d | %.3f (%.3f-%.3f) | %.0f%% | %d |" % (
            net, n, len(v), mean, min(offs), max(offs), 100 * mean / v[0][1], sum(max(0, x) for _, _, x in v)))
