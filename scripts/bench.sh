#!/usr/bin/env bash
# make bench: measures a fresh three-node cluster on this machine and prints
# one table. See docs/performance.md for what each column means.
#
# It starts three new nodes (HTTP 127.0.0.1:18001-18003, raft 19001-19003,
# data in a temp dir; not the ports or data of make run) and raftkv bench's
# do-nothing server (127.0.0.1:18000), preloads the key space, and then, for
# each connection count, measures the ceiling (both clients against the
# do-nothing server) and the store:
#   wrk            put, get (linearizable), get-stale: the headline figures
#   raftkv bench   put, get, get-stale, mixed (90% get / 10% put), and txn
# Every store figure is divided by the ceiling of the same client at the same
# connection count and request shape. On exit, however it exits, the nodes
# are stopped and the temp dir removed.
#
# wrk takes one URL and pins each connection to one address, so the load is
# spread by running one wrk process per node, in parallel, with the
# connections split as evenly as they go (64 = 22+21+21), and merging their
# latency distributions exactly; the ceiling runs the same three processes
# against the do-nothing server. With fewer connections than nodes (1), one
# connection cannot be shared: wrk visits the nodes one after another, a
# third of the time each. raftkv bench sends each worker's requests
# round-robin over the three nodes.
#
# Settings (environment):
#   BENCH_DURATION=5          seconds per store measurement
#   BENCH_CEILING_DURATION=3  seconds per ceiling measurement
#   BENCH_CONNECTIONS="1 16 64 256"
#   BENCH_WORKLOADS="put get get-stale mixed txn"  a subset for quick A/B runs
#   BENCH_TOOLS="wrk raftkv-bench"
#   BENCH_VALUE_SIZE=256  BENCH_KEYS=10000
#   BENCH_PORT_BASE=18000     HTTP on base+1..3, raft on base+1001..1003
#   BENCH_RESTART=1           afterwards, sample every node's Go heap in use
#                             under wrk put at 64 connections, then restart
#                             a follower and time it until it serves a
#                             linearizable read (with BENCH_KEYS=1000000:
#                             the 1M-key targets)
#   BENCH_PROFILE=FILE        afterwards, take a 5 s CPU profile of the
#                             leader under wrk put at 64 connections
#   RAFTKV_BIN=bin/raftkv
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${RAFTKV_BIN:-bin/raftkv}
dur=${BENCH_DURATION:-5}
ceil_dur=${BENCH_CEILING_DURATION:-3}
conns_list=${BENCH_CONNECTIONS:-"1 16 64 256"}
workloads=" ${BENCH_WORKLOADS:-put get get-stale mixed txn} "
tools=" ${BENCH_TOOLS:-wrk raftkv-bench} "
value_size=${BENCH_VALUE_SIZE:-256}
keys=${BENCH_KEYS:-10000}
base=${BENCH_PORT_BASE:-18000}
profile=${BENCH_PROFILE:-}
restart=${BENCH_RESTART:-}
warmup=1s # raftkv bench only; wrk has no warm-up

die() {
	echo "bench: $*" >&2
	exit 1
}

[ -x "$bin" ] || die "$bin not found: run make build (or make bench)"
command -v curl >/dev/null || die "curl is needed"
if ! command -v wrk >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "bench: installing wrk (Debian package)" >&2
		apt-get update -qq && apt-get install -y -qq wrk >/dev/null
	else
		die "wrk is needed: apt-get install wrk"
	fi
fi

null_addr=127.0.0.1:$base
node_addrs=()
for i in 1 2 3; do node_addrs+=("127.0.0.1:$((base + i))"); done
addrs=$(IFS=,; echo "${node_addrs[*]}")
for a in "$null_addr" "${node_addrs[@]}"; do
	# bash's /dev/tcp: a connection that opens means the port is taken.
	if (exec 3<>"/dev/tcp/${a%:*}/${a#*:}") 2>/dev/null; then
		die "port ${a#*:} is in use (another make bench?); set BENCH_PORT_BASE"
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/raftkv-bench.XXXXXX")
pids=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [ "$rc" -ne 0 ] && ls "$work"/n?.log >/dev/null 2>&1; then
		echo "bench: failed (exit $rc); the nodes' last log lines:" >&2
		tail -n 5 "$work"/n?.log >&2 || true
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_up URL: poll until URL answers 2xx (30 s at most).
wait_up() {
	for _ in $(seq 150); do
		curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
		sleep 0.2
	done
	die "$1 did not come up"
}

# start_node I: starts node I (1-3) in the background; its pid goes to
# pids[I-1].
start_node() {
	local i=$1 j join=()
	for j in 1 2 3; do [ "$j" = "$i" ] || join+=("${node_addrs[$((j - 1))]}"); done
	"$bin" serve --id "n$i" --data-dir "$work/n$i" \
		--http-addr "${node_addrs[$((i - 1))]}" --raft-addr "127.0.0.1:$((base + 1000 + i))" \
		--bootstrap-expect 3 --join "$(IFS=,; echo "${join[*]}")" \
		--pprof --log-level warn >>"$work/n$i.log" 2>&1 &
	pids[i - 1]=$!
}

started=$(date +%s)
for i in 1 2 3; do start_node "$i"; done
"$bin" bench --serve-null "$null_addr" --value-size "$value_size" >"$work/null.log" 2>&1 &
pids+=($!)
for a in "${node_addrs[@]}"; do wait_up "http://$a/readyz"; done
wait_up "http://$null_addr/"
"$bin" bench --addr "$addrs" --preload-only --keys "$keys" --value-size "$value_size" --connections 64 2>&1 |
	sed 's/^raftkv bench: /bench: /' >&2

# --- wrk ------------------------------------------------------------------

# merge_wrk MODE FILES...: prints "ops/s p50_ms p99_ms errors" of wrk runs
# that went side by side (par: their rates add up) or one after another
# (seq: total ops over total time). Only 2xx/3xx answers count as ops; the
# latency distribution is wrk's, at 1 us resolution, of every answer.
merge_wrk() {
	local mode=$1
	shift
	local sum lat
	sum=$(grep -h '^summary ' "$@" | awk -v mode="$mode" '
		{
			for (i = 2; i <= NF; i++) { split($i, kv, "="); s[kv[1]] = kv[2] }
			ok = s["requests"] - s["status"]
			okall += ok; us += s["duration_us"]; rate += ok / (s["duration_us"] / 1e6)
			errs += s["status"] + s["connect"] + s["read"] + s["write"] + s["timeout"]
		}
		END {
			if (mode == "seq") rate = okall / (us / 1e6)
			printf "%.0f %d", rate, errs
		}')
	lat=$(grep -h '^lat ' "$@" | sort -k2,2n | awk '
		{ v[NR] = $2; c[NR] = $3; n += $3 }
		END {
			if (n == 0) { print "0 0"; exit }
			r50 = int(n * 0.50); if (r50 < n * 0.50) r50++
			r99 = int(n * 0.99); if (r99 < n * 0.99) r99++
			for (i = 1; i <= NR; i++) {
				cum += c[i]
				if (p50 == "" && cum >= r50) p50 = v[i]
				if (p99 == "" && cum >= r99) p99 = v[i]
			}
			printf "%.3f %.3f", p50 / 1000, p99 / 1000
		}')
	set -- $sum $lat
	echo "$1 $3 $4 $2"
}

# run_wrk SCRIPT CONNS SECONDS URL...: one wrk process per URL, in parallel,
# CONNS split over them; with fewer CONNS than URLs, one URL after another.
run_wrk() {
	local script=$1 conns=$2 secs=$3
	shift 3
	local urls=("$@") n=$# j c outs=() wpids=()
	rm -f "$work"/wrk.*
	if [ "$conns" -lt "$n" ]; then
		local per=$(((secs + n - 1) / n))
		for j in "${!urls[@]}"; do
			BENCH_WRK_OUT="$work/wrk.$j" BENCH_SEED=$RANDOM BENCH_KEYS=$keys BENCH_VALUE_SIZE=$value_size \
				wrk -t1 -c"$conns" -d"${per}s" --timeout 10s -s "scripts/bench/$script.lua" "${urls[$j]}" \
				>"$work/wrk.$j.log" 2>&1 || { cat "$work/wrk.$j.log" >&2; die "wrk failed"; }
			outs+=("$work/wrk.$j")
		done
		merge_wrk seq "${outs[@]}"
		return
	fi
	for j in "${!urls[@]}"; do
		c=$((conns / n + (j < conns % n ? 1 : 0)))
		BENCH_WRK_OUT="$work/wrk.$j" BENCH_SEED=$RANDOM BENCH_KEYS=$keys BENCH_VALUE_SIZE=$value_size \
			wrk -t1 -c"$c" -d"${secs}s" --timeout 10s -s "scripts/bench/$script.lua" "${urls[$j]}" \
			>"$work/wrk.$j.log" 2>&1 &
		wpids+=($!)
		outs+=("$work/wrk.$j")
	done
	for j in "${!wpids[@]}"; do
		wait "${wpids[$j]}" || { cat "$work/wrk.$j.log" >&2; die "wrk failed"; }
	done
	merge_wrk par "${outs[@]}"
}

# --- raftkv bench -----------------------------------------------------------

json_field() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"; }

# run_rb WORKLOAD CONNS SECONDS ADDRS: prints "ops/s p50_ms p99_ms errors".
run_rb() {
	local out
	out=$("$bin" bench --addr "$4" --workload "$1" --connections "$2" --duration "${3}s" --warmup "$warmup" \
		--keys "$keys" --value-size "$value_size" --preload=false --json) || die "raftkv bench --workload $1 failed"
	printf '%.0f %.3f %.3f %s\n' "$(json_field ops_per_sec <<<"$out")" "$(json_field p50 <<<"$out")" \
		"$(json_field p99 <<<"$out")" "$(json_field errors_total <<<"$out")"
}

# --- the suite ----------------------------------------------------------------

nodes=()
for a in "${node_addrs[@]}"; do nodes+=("http://$a"); done
nulls=("http://$null_addr" "http://$null_addr" "http://$null_addr")

# want TOOL WORKLOAD: whether BENCH_TOOLS and BENCH_WORKLOADS select it. A
# ceiling cell is wanted when a store workload measured against it is.
want() {
	[[ $tools == *" $1 "* ]] || return 1
	case $2 in
	get) [[ $workloads == *" get "* || $workloads == *" get-stale "* ]] ;;
	*) [[ $workloads == *" $2 "* ]] ;;
	esac
}

# Results go to $work/res.TARGET.TOOL.WORKLOAD.CONNS as "ops/s p50 p99 errors".
cell() {
	local target=$1 tool=$2 wl=$3 c=$4 line
	want "$tool" "$wl" || return 0
	echo "bench: $target $tool $wl at $c connections" >&2
	case "$target.$tool" in
	ceiling.wrk) line=$(run_wrk "$wl" "$c" "$ceil_dur" "${nulls[@]}") ;;
	store.wrk) line=$(run_wrk "$wl" "$c" "$dur" "${nodes[@]}") ;;
	ceiling.raftkv-bench) line=$(run_rb "$wl" "$c" "$ceil_dur" "http://$null_addr") ;;
	store.raftkv-bench) line=$(run_rb "$wl" "$c" "$dur" "$addrs") ;;
	esac
	echo "$line" >"$work/res.$target.$tool.$wl.$c"
}

for c in $conns_list; do
	cell ceiling wrk put "$c"
	cell store wrk put "$c"
	cell ceiling wrk get "$c"
	cell store wrk get "$c"
	cell store wrk get-stale "$c" # its ceiling is get's: the null server ignores the query
	for wl in put get mixed; do cell ceiling raftkv-bench "$wl" "$c"; done
	for wl in put get get-stale mixed; do cell store raftkv-bench "$wl" "$c"; done
done
# txn runs once, at 16 connections; a server without POST /v1/txn makes
# raftkv bench refuse it, and the table says so.
if want raftkv-bench txn; then
	echo "bench: store raftkv-bench txn at 16 connections" >&2
	if txn_out=$("$bin" bench --addr "$addrs" --workload txn --connections 16 --duration "${dur}s" --warmup "$warmup" \
		--keys "$keys" --value-size "$value_size" --preload=false --json 2>&1); then
		printf '%.0f %.3f %.3f %s\n' "$(json_field ops_per_sec <<<"$txn_out")" "$(json_field p50 <<<"$txn_out")" \
			"$(json_field p99 <<<"$txn_out")" "$(json_field errors_total <<<"$txn_out")" >"$work/res.store.raftkv-bench.txn.16"
		cell ceiling raftkv-bench txn 16
	fi
fi

# --- the table ------------------------------------------------------------------

echo
echo "raftkv make bench: $(nproc) CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB, $("$bin" version),"
echo "3 nodes + client on one machine, ${value_size}-byte values, ${keys} keys, ${dur}s per cell (ceiling ${ceil_dur}s)"
echo
fmt='%-10s %6s  %-13s %9s %9s %9s %7s %11s %8s\n'
# shellcheck disable=SC2059
printf "$fmt" workload conns tool ops/s p50_ms p99_ms errors ceiling of_ceil
# row TOOL WORKLOAD SHAPE CONNS: one line of the table.
row() {
	local ops p50 p99 errs cops frac
	[ -f "$work/res.store.$1.$2.$4" ] || return 0
	read -r ops p50 p99 errs <"$work/res.store.$1.$2.$4"
	read -r cops _ <"$work/res.ceiling.$1.$3.$4"
	frac=$(awk -v a="$ops" -v b="$cops" 'BEGIN { if (b > 0) printf "%.1f%%", 100 * a / b; else print "-" }')
	# shellcheck disable=SC2059
	printf "$fmt" "$2" "$4" "$1" "$ops" "$p50" "$p99" "$errs" "$cops" "$frac"
}
for r in "wrk put put" "raftkv-bench put put" "wrk get get" "raftkv-bench get get" \
	"wrk get-stale get" "raftkv-bench get-stale get" "raftkv-bench mixed mixed"; do
	for c in $conns_list; do
		# shellcheck disable=SC2086
		row $r "$c"
	done
done
if [ -f "$work/res.store.raftkv-bench.txn.16" ]; then
	row raftkv-bench txn txn 16
elif want raftkv-bench txn; then
	printf '%-10s %6s  %-13s %s\n' txn 16 raftkv-bench "unsupported: ${txn_out#raftkv: bench: }"
fi
echo
echo "ops/s counts 2xx answers only; errors are every other answer or failed request."
echo "ceiling: the same client, connections and request shape against raftkv bench --serve-null."

# cpu_ticks: "busy total" jiffies of the whole machine; proc_ticks PID:
# user+system jiffies of one process.
cpu_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

if [ -n "$profile" ]; then
	leader=$(curl -fsS "http://${node_addrs[0]}/v1/cluster" | sed -n 's/.*"leader_api":"\([^"]*\)".*/\1/p')
	[ -n "$leader" ] || die "no leader to profile"
	echo "bench: profiling the leader $leader for 5s under wrk put at 64 connections" >&2
	run_wrk put 64 8 "${nodes[@]}" >"$work/profile.load" &
	load=$!
	sleep 1
	read -r busy0 total0 < <(cpu_ticks)
	node_t0=()
	for i in 0 1 2; do node_t0+=("$(proc_ticks "${pids[$i]}")"); done
	curl -fsS -o "$profile" "http://$leader/debug/pprof/profile?seconds=5" || die "profile failed"
	read -r busy1 total1 < <(cpu_ticks)
	usage="CPU in that window: machine $(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v n="$(nproc)" \
		'BEGIN { printf "%.0f%% of %d CPUs busy", 100 * b / t, n }')"
	hz=$(getconf CLK_TCK)
	for i in 0 1 2; do
		role=follower
		[ "${node_addrs[$i]}" = "$leader" ] && role=leader
		usage+=", n$((i + 1)) ($role) $(awk -v d=$(($(proc_ticks "${pids[$i]}") - node_t0[i])) -v hz="$hz" \
			'BEGIN { printf "%.0f%%", 100 * d / hz / 5 }') of one CPU"
	done
	wait "$load" || true
	read -r pops pp50 pp99 perrs <"$work/profile.load"
	echo
	echo "CPU profile of the leader ($leader) for 5s under wrk put at 64 connections: $profile"
	echo "load while profiled: $pops ops/s, p50 ${pp50}ms, p99 ${pp99}ms, $perrs errors"
	echo "$usage"
	echo "read it with: go tool pprof -top $bin $profile"
fi
if [ -n "$restart" ]; then
	heap() { curl -fsS "http://$1/metrics" | awk '/^go_memstats_heap_inuse_bytes / { printf "%.0f", $2 }'; }
	echo "bench: sampling the Go heap in use under wrk put at 64 connections for 10s" >&2
	run_wrk put 64 10 "${nodes[@]}" >"$work/heap.load" &
	load=$!
	peak=(0 0 0)
	for _ in $(seq 10); do
		sleep 1
		for i in 0 1 2; do
			h=$(heap "${node_addrs[$i]}") || h=0
			[ "${h:-0}" -gt "${peak[$i]}" ] && peak[i]=$h
		done
	done
	wait "$load" || true
	read -r hops _ <"$work/heap.load"
	echo
	echo "Go heap in use (go_memstats_heap_inuse_bytes), peak of 1 s samples under wrk put at 64 connections ($hops ops/s):"
	for i in 0 1 2; do
		awk -v n="n$((i + 1))" -v b="${peak[$i]}" 'BEGIN { printf "  %s %.1f MiB\n", n, b / 1048576 }'
	done
	leader=$(curl -fsS "http://${node_addrs[0]}/v1/cluster" | sed -n 's/.*"leader_api":"\([^"]*\)".*/\1/p')
	f=1
	[ "${node_addrs[0]}" = "$leader" ] && f=2
	echo "bench: restarting follower n$f" >&2
	kill -TERM "${pids[$((f - 1))]}"
	wait "${pids[$((f - 1))]}" 2>/dev/null || true
	t0=$(date +%s%N)
	start_node "$f"
	key=$(printf 'bench/%08d' $((keys - 1)))
	until curl -fsS -o /dev/null --max-time 1 "http://${node_addrs[$((f - 1))]}/v1/kv/$key" 2>/dev/null; do
		[ $(($(date +%s%N) - t0)) -lt 60000000000 ] || die "n$f did not serve a linearizable read within 60s of its restart"
		sleep 0.05
	done
	t1=$(date +%s%N)
	echo "restart of follower n$f ($(du -sh "$work/n$f/kv.db" | cut -f1) kv.db, $keys keys): first linearizable read served $(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.2f", d / 1e9 }') s after the process started"
fi
echo "bench: done in $(($(date +%s) - started))s" >&2
