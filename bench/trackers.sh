#!/usr/bin/env bash
# Side by side: `peercdn bench tracker` against bittorrent-tracker's server
# (npm, Node) and against `peercdn serve`, each fresh for every run, on this
# machine's cores (the generator shares them). Results: $OUT/*.json and the
# summaries on stdout. Run by `make bench-trackers`.
#
# RUNS picks the runs (default: all three); REPEAT runs each that many times,
# the trackers alternating, since one run on 2 noisy cores is not a figure:
#   RUNS=storm5s REPEAT=5 bench/trackers.sh
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
CONNS_COMPAT=${CONNS_COMPAT:-1000}
CONNS_REAL=${CONNS_REAL:-10000}
SECONDS_WINDOW=${SECONDS_WINDOW:-30}
RUNS=${RUNS:-compat storm5s storm20s}
REPEAT=${REPEAT:-1}

# Flags that let aquatic's flood through peercdn's per-connection limits
# (bittorrent-tracker has none); the realistic runs use the defaults.
COMPAT_FLAGS="--messages-per-second 1000000 --message-burst 1000000 --ip-messages-per-second 10000000 \
--ip-message-burst 10000000 --max-swarms-per-conn 1024 --max-pending-offers 10000 --max-conns-per-ip 1000"

start_peercdn() { # extra flags
	$BIN serve --listen 127.0.0.1:8090 "$@" >"$OUT/peercdn.log" 2>&1 &
	server_pid=$!
	URL=ws://127.0.0.1:8090/announce
}
start_bittorrent() {
	node bench/bittorrent-tracker-server.mjs 8000 >"$OUT/bittorrent-tracker.log" 2>&1 &
	server_pid=$!
	URL=ws://127.0.0.1:8000/
}
run() { # name mode conns storm [server flags]
	name=$1 mode=$2 conns=$3 storm=$4; shift 4
	case " $RUNS " in *" ${name%%-*} "*) ;; *) return 0 ;; esac
	for rep in $(seq "$REPEAT"); do
		for tracker in bittorrent peercdn; do
			if [ $tracker = peercdn ]; then start_peercdn "$@"; wait_port 8090; else start_bittorrent; wait_port 8000; fi
			sleep 1
			out=$OUT/$name-$tracker; [ "$REPEAT" = 1 ] || out=$out-$rep
			echo "== $name: $tracker (run $rep of $REPEAT)"
			$BIN bench tracker --url "$URL" --mode "$mode" --conns "$conns" --storm "$storm" \
				--seconds "$SECONDS_WINDOW" --server-pid "$server_pid" --json >"$out.json"
			$BIN bench tracker --summary "$out.json"
			stop
			sleep 2
		done
	done
}

run compat-$CONNS_COMPAT compat "$CONNS_COMPAT" 5s $COMPAT_FLAGS
run storm5s-$CONNS_REAL realistic "$CONNS_REAL" 5s
run storm20s-$CONNS_REAL realistic "$CONNS_REAL" 20s
