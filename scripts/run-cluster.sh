#!/usr/bin/env bash
# Starts a raftkv cluster of NODES nodes (default 3) on this machine: node i
# serves HTTP on 127.0.0.1:800i and raft on 127.0.0.1:900i (8001-8003 and
# 9001-9003 for three; 8004/9004, 8005/9005, ... beyond), data under ./data
# (kept between runs). The nodes form the cluster together
# (--bootstrap-expect NODES); run again with more nodes on the data of a
# formed cluster, and the new ones join it as non-voters and are promoted
# once caught up. Every line of output is prefixed with the node id. Ctrl-C
# stops them all cleanly.
#
# RAFTKV_RUN_SECURE=1 (make run-secure) turns TLS and ACLs on: on first use it
# writes a development PKI to $data/tls (raftkv cert; member certificates for
# n1 to n9, or to nNODES beyond) and a root token secret to $data/root-token
# (raftkv acl bootstrap-token, mode 0600), and keeps both for later runs.
set -euo pipefail

bin=${RAFTKV_BIN:-bin/raftkv}
data=${RAFTKV_RUN_DATA:-data}
secure=${RAFTKV_RUN_SECURE:-}
nodes=${NODES:-3}
if ! [[ $nodes =~ ^[0-9]+$ ]] || [ "$nodes" -lt 1 ] || [ "$nodes" -gt 99 ]; then
	echo "run-cluster: NODES must be a number from 1 to 99, not \"$nodes\"" >&2
	exit 2
fi
pids=()

scheme=http
if [ -n "$secure" ]; then
	scheme=https
	mkdir -p "$data"
	if [ ! -e "$data/tls/ca.pem" ]; then
		ids=()
		for i in $(seq 1 $((nodes > 9 ? nodes : 9))); do ids+=("n$i"); done
		"$bin" cert --dir "$data/tls" --nodes "$(IFS=,; echo "${ids[*]}")" --hosts 127.0.0.1,localhost >/dev/null
		echo "raftkv: wrote a development CA and certificates to $data/tls/"
	fi
	for i in $(seq 1 "$nodes"); do
		if [ ! -e "$data/tls/n$i.pem" ]; then
			echo "run-cluster: $data/tls has no certificate for n$i; remove $data/tls to make a PKI for $nodes nodes" >&2
			exit 2
		fi
	done
	if [ ! -e "$data/root-token" ]; then
		"$bin" acl bootstrap-token --out "$data/root-token" 2>/dev/null
		echo "raftkv: wrote a new root token secret to $data/root-token (mode 0600)"
	fi
fi

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
	extra=()
	if [ -n "$secure" ]; then
		extra=(--tls-cert "$data/tls/n$i.pem" --tls-key "$data/tls/n$i-key.pem" --tls-ca "$data/tls/ca.pem"
			--acl --acl-bootstrap-token-file "$data/root-token")
	fi
	mkdir -p "$data/n$i"
	# The node runs in the background of this script; sed prefixes its lines.
	"$bin" serve --id "n$i" --data-dir "$data/n$i" \
		--http-addr "127.0.0.1:$((8000 + i))" --raft-addr "127.0.0.1:$((9000 + i))" \
		--bootstrap-expect "$nodes" --join "$(IFS=,; echo "${join[*]}")" ${extra[@]+"${extra[@]}"} \
		> >(trap "" INT; exec sed -u "s/^/[n$i] /") 2>&1 &
	pids+=($!)
done

echo "raftkv: $nodes nodes starting on $scheme://127.0.0.1:8001 to :$((8000 + nodes)) (data in $data/). Ctrl-C stops them."
if [ -n "$secure" ]; then
	echo "raftkv: TLS and ACLs on; try: curl --cacert $data/tls/ca.pem -H \"Authorization: Bearer \$(cat $data/root-token)\" https://127.0.0.1:8001/v1/cluster"
fi
# A node stopped on its own (killed to try a failover, say) leaves the
# others running; Ctrl-C stops whatever is left.
wait
