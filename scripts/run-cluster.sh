#!/usr/bin/env bash
# Starts a raftkv cluster of NODES nodes (default 3) on this machine: node i
# serves HTTP on 127.0.0.1:800i and raft on 127.0.0.1:900i (8001-8003 and
# 9001-9003 for three; 8004/9004, 8005/9005, ... beyond), data under ./data
# (kept between runs). The nodes form the cluster together
# (--bootstrap-expect NODES); run again with more nodes on the data of a
# formed cluster, and the new ones join it as non-voters and are promoted
# once caught up. Every line of output is prefixed with the node id. Ctrl-C
# stops them all cleanly.
set -euo pipefail

bin=${RAFTKV_BIN:-bin/raftkv}
data=${RAFTKV_RUN_DATA:-data}
nodes=${NODES:-3}
if ! [[ $nodes =~ ^[0-9]+$ ]] || [ "$nodes" -lt 1 ] || [ "$nodes" -gt 99 ]; then
	echo "run-cluster: NODES must be a number from 1 to 99, not \"$nodes\"" >&2
	exit 2
fi
pids=()

stop() {
	trap - INT TERM
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait
	exit 0
}
trap stop INT TERM

for i in $(seq 1 "$nodes"); do
	join=()
	for j in $(seq 1 "$nodes"); do [ "$j" = "$i" ] || join+=("127.0.0.1:$((8000 + j))"); done
	mkdir -p "$data/n$i"
	# The node runs in the background of this script; sed prefixes its lines.
	"$bin" serve --id "n$i" --data-dir "$data/n$i" \
		--http-addr "127.0.0.1:$((8000 + i))" --raft-addr "127.0.0.1:$((9000 + i))" \
		--bootstrap-expect "$nodes" --join "$(IFS=,; echo "${join[*]}")" \
		> >(trap "" INT; exec sed -u "s/^/[n$i] /") 2>&1 &
	pids+=($!)
done

echo "raftkv: $nodes nodes starting on http://127.0.0.1:8001 to :$((8000 + nodes)) (data in $data/). Ctrl-C stops them."
# A node stopped on its own (killed to try a failover, say) leaves the
# others running; Ctrl-C stops whatever is left.
wait
