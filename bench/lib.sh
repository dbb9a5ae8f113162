# Shared by bench/*.sh: one server at a time, stopped on exit.
BIN=${BIN:-bin/peercdn}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
server_pid=""
stop() {
	if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
	server_pid=""
}
trap stop EXIT INT TERM
# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s at most).
wait_port() {
	i=0; until (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; do i=$((i+1)); [ $i -lt 100 ] || { echo "no server on $1"; exit 1; }; sleep 0.1; done
}
