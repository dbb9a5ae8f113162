#!/usr/bin/env python3
"""network-table.py: the markdown table of bench/network.sh's summaries
(bench/out/network-<preset>-<viewers>.json), one row per file given."""
import json
import sys

print("| preset | viewers | offload | of the limit | stalls, ms (CDN alone) | startup p50 ms (CDN alone) | CDN copies per segment | failed connections (by NAT) | abandoned to the CDN | P2P bytes wasted |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
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
