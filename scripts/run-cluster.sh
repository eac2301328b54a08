#!/usr/bin/env bash
# Starts a three-node raftkv cluster on this machine: HTTP 127.0.0.1:8001-8003,
# raft 127.0.0.1:9001-9003, data under ./data (kept between runs). Every line
# of output is prefixed with the node id. Ctrl-C stops all three cleanly.
set -euo pipefail

bin=${RAFTKV_BIN:-bin/raftkv}
data=${RAFTKV_RUN_DATA:-data}
pids=()

stop() {
	trap - INT TERM
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait
	exit 0
}
trap stop INT TERM

for i in 1 2 3; do
	join=()
	for j in 1 2 3; do [ "$j" = "$i" ] || join+=("127.0.0.1:800$j"); done
	mkdir -p "$data/n$i"
	# The node runs in the background of this script; sed prefixes its lines.
	"$bin" serve --id "n$i" --data-dir "$data/n$i" \
		--http-addr "127.0.0.1:800$i" --raft-addr "127.0.0.1:900$i" \
		--bootstrap-expect 3 --join "$(IFS=,; echo "${join[*]}")" \
		> >(trap "" INT; exec sed -u "s/^/[n$i] /") 2>&1 &
	pids+=($!)
done

echo "raftkv: 3 nodes starting on http://127.0.0.1:8001, :8002, :8003 (data in $data/). Ctrl-C stops them."
# A node stopped on its own (killed to try a failover, say) leaves the
# others running; Ctrl-C stops whatever is left.
wait
