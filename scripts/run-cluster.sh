#!/usr/bin/env bash
# Starts a three-node raftkv cluster on this machine: HTTP 127.0.0.1:8001-8003,
# raft 127.0.0.1:9001-9003, data under ./data (kept between runs). Every line
# of output is prefixed with the node id. Ctrl-C stops all three cleanly.
#
# RAFTKV_RUN_SECURE=1 (make run-secure) turns TLS and ACLs on: on first use it
# writes a development PKI to $data/tls (raftkv cert) and a root token secret
# to $data/root-token (raftkv acl bootstrap-token, mode 0600), and keeps both
# for later runs.
set -euo pipefail

bin=${RAFTKV_BIN:-bin/raftkv}
data=${RAFTKV_RUN_DATA:-data}
secure=${RAFTKV_RUN_SECURE:-}
pids=()

scheme=http
if [ -n "$secure" ]; then
	scheme=https
	mkdir -p "$data"
	if [ ! -e "$data/tls/ca.pem" ]; then
		"$bin" cert --dir "$data/tls" --nodes n1,n2,n3 --hosts 127.0.0.1,localhost >/dev/null
		echo "raftkv: wrote a development CA and certificates to $data/tls/"
	fi
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

for i in 1 2 3; do
	join=()
	for j in 1 2 3; do [ "$j" = "$i" ] || join+=("127.0.0.1:800$j"); done
	extra=()
	if [ -n "$secure" ]; then
		extra=(--tls-cert "$data/tls/n$i.pem" --tls-key "$data/tls/n$i-key.pem" --tls-ca "$data/tls/ca.pem"
			--acl --acl-bootstrap-token-file "$data/root-token")
	fi
	mkdir -p "$data/n$i"
	# The node runs in the background of this script; sed prefixes its lines.
	"$bin" serve --id "n$i" --data-dir "$data/n$i" \
		--http-addr "127.0.0.1:800$i" --raft-addr "127.0.0.1:900$i" \
		--bootstrap-expect 3 --join "$(IFS=,; echo "${join[*]}")" ${extra[@]+"${extra[@]}"} \
		> >(trap "" INT; exec sed -u "s/^/[n$i] /") 2>&1 &
	pids+=($!)
done

echo "raftkv: 3 nodes starting on $scheme://127.0.0.1:8001, :8002, :8003 (data in $data/). Ctrl-C stops them."
if [ -n "$secure" ]; then
	echo "raftkv: TLS and ACLs on; try: curl --cacert $data/tls/ca.pem -H \"Authorization: Bearer \$(cat $data/root-token)\" https://127.0.0.1:8001/v1/cluster"
fi
# A node stopped on its own (killed to try a failover, say) leaves the
# others running; Ctrl-C stops whatever is left.
wait
