#!/usr/bin/env python3
"""cpuprofile.py: what a page's main thread did, from a .cpuprofile (the
field harness's FIELD_PROFILE), with the agent's Go function names.

  GOOS=js GOARCH=wasm go build -buildvcs=false -trimpath -o /tmp/named.wasm ./wasm
  bench/cpuprofile.py PROFILE /tmp/named.wasm [FROM_S TO_S]

The served agent is built with -s -w (no names); the same source built
without them has the same functions in the same order, so its name section
names the profile's wasm-function[N]. Prints busy time and the functions
with the most time on the stack (inclusive) and at its top (self), over the
whole profile or seconds FROM_S to TO_S after its start. Samples are wall
time: on a saturated machine they include the time the thread waited for a
core."""
import collections, json, re, sys


def uleb(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def wasm_names(path):
    b, i, names = open(path, "rb").read(), 8, {}
    while i < len(b):
        sid = b[i]
        size, i = uleb(b, i + 1)
        end = i + size
        if sid == 0:
            nl, j = uleb(b, i)
            if b[j:j + nl] == b"name":
                j += nl
                while j < end:
                    sub = b[j]
                    ssz, j = uleb(b, j + 1)
                    if sub == 1:  # function names
                        cnt, k = uleb(b, j)
                        for _ in range(cnt):
                            idx, k = uleb(b, k)
                            l, k = uleb(b, k)
                            names[idx] = b[k:k + l].decode(errors="replace")
                            k += l
                    j += ssz
        i = end
    return names


def main():
    prof, names = json.load(open(sys.argv[1])), wasm_names(sys.argv[2])
    lo, hi = (float(sys.argv[3]), float(sys.argv[4])) if len(sys.argv) > 4 else (0, float("inf"))
    nodes = {n["id"]: n for n in prof["nodes"]}
    parent = {c: n["id"] for n in prof["nodes"] for c in n.get("children") or []}

    def name(nid):
        f = nodes[nid]["callFrame"]["functionName"] or "(anonymous)"
        m = re.match(r"wasm-function\[(\d+)\]", f)
        return (names.get(int(m.group(1)), f) if m else f).replace("github.com_peercdn_peercdn_", "")

    t, busy = 0, 0
    incl, self_ = collections.Counter(), collections.Counter()
    for s, d in zip(prof["samples"], prof["timeDeltas"]):
        t += d
        if not lo * 1e6 <= t < hi * 1e6 or name(s) == "(idle)":
            continue
        busy += d
        self_[name(s)] += d
        seen, x = set(), s
        while x is not None:
            k = name(x)
            if k not in seen:
                incl[k] += d
                seen.add(k)
            x = parent.get(x)
    print("busy %.0f ms" % (busy / 1000))
    print("-- inclusive ms")
    for k, v in incl.most_common(40):
        print("%7.0f  %s" % (v / 1000, k))
    print("-- self ms")
    for k, v in self_.most_common(20):
        print("%7.0f  %s" % (v / 1000, k))


if __name__ == "__main__":
    main()
