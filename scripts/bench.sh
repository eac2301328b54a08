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
#   BENCH_PROFILE=PREFIX      afterwards, take 5 s CPU profiles of all three
#                             nodes at once under wrk put at each of
#                             BENCH_PROFILE_CONNECTIONS ("64 256"), into
#                             PREFIX.nI.cC.pprof, with each node's CPU
#                             (BENCH_PROFILE_WORKLOAD=get: under wrk get)
#   BENCH_NODE_FLAGS=""       extra raftkv serve flags for every node, e.g.
#                             "--watch-history 0" or "--raft-log-store wal"
#   BENCH_WATCH=1             afterwards, the watch phase (below); "only":
#                             the watch phase alone, without the suite
#   RAFTKV_BIN=bin/raftkv
#
# The watch phase (docs/performance.md, "Watches") runs on fresh clusters of
# its own, so the suite's load does not blur it:
#   1. a fresh cluster: raftkv bench --workload watch-idle opens
#      BENCH_WATCH_IDLE watchers on n1 and reports its memory per watcher;
#      then the key space is preloaded and --workload watch-delay opens
#      BENCH_WATCH_WATCHERS watchers over the three nodes and writes
#      BENCH_WATCH_RATE puts/s for BENCH_WATCH_DURATION seconds, and reports
#      the delay from each write's answer to its event at every watcher;
#   2. BENCH_WATCH_PAIRS pairs of fresh clusters, one with history as
#      BENCH_NODE_FLAGS has it (on by default), one with --watch-history 0
#      added (off), in the order on-off, off-on, ...: each preloaded, then
#      wrk put at 64 and 256 connections for BENCH_DURATION seconds; prints
#      the medians and their ratio.
# It needs BENCH_WATCH_IDLE + 1024 open files per process: it raises the
# soft limit (ulimit -n) up to the hard one, and stops if that is too low.
#   BENCH_WATCH_IDLE=10000  BENCH_WATCH_WATCHERS=1000  BENCH_WATCH_RATE=1000
#   BENCH_WATCH_DURATION=10  BENCH_WATCH_CONNECTIONS=64 (watch-delay's writers)
#   BENCH_WATCH_PAIRS=2
#   BENCH_LEASES=1            afterwards, the lease and lock phase (below);
#                             "only": that phase alone, without the suite
#
# The lease and lock phase (docs/performance.md, "Leases and locks") runs
# on a fresh cluster of its own, BENCH_LEASES_ROUNDS rounds of, in turn:
#   1. raftkv bench put at BENCH_LEASES_CONNECTIONS connections, 16-byte
#      values, BENCH_DURATION seconds: the ceiling of small writes, same
#      client, same connections; the leader's CPU (its /proc ticks) and
#      the raft entries it committed are read around it;
#   2. --workload leases-keepalive: BENCH_LEASES_COUNT leases of
#      BENCH_LEASES_TTL, kept alive from BENCH_LEASES_CONNECTIONS
#      connections for BENCH_LEASES_DURATION seconds (the leader's CPU and
#      entries come from the nodes' /metrics over the measured window);
#      a lost lease fails the run;
#   3. raftkv bench put at 1 connection (one client's write latency);
#   4. --workload lock-uncontended, one worker, BENCH_DURATION seconds;
#   5. --workload lock-contended, BENCH_LOCK_CLIENTS workers spread over
#      the three nodes, BENCH_DURATION seconds, all on one lock.
# It prints every round and the medians.
#   BENCH_LEASES_COUNT=10000  BENCH_LEASES_TTL=30s  BENCH_LEASES_CONNECTIONS=64
#   BENCH_LEASES_DURATION=10  BENCH_LEASES_ROUNDS=3  BENCH_LOCK_CLIENTS=16
#   BENCH_LOCK_TTL=10s
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${RAFTKV_BIN:-bin/raftkv}
dur=${BENCH_DURATION:-5}
ceil_dur=${BENCH_CEILING_DURATION:-3}
conns_list=${BENCH_CONNECTIONS:-"1 16 64 256"}
workloads=" ${BENCH_WORKLOADS:-put get get-stale mixed txn put-hot} "
tools=" ${BENCH_TOOLS:-wrk raftkv-bench} "
value_size=${BENCH_VALUE_SIZE:-256}
keys=${BENCH_KEYS:-10000}
base=${BENCH_PORT_BASE:-18000}
hot_keys=${BENCH_HOT_KEYS:-10}
hot_conns=${BENCH_HOT_CONNECTIONS:-256}
profile=${BENCH_PROFILE:-}
restart=${BENCH_RESTART:-}
watch=${BENCH_WATCH:-}
[ "$watch" = 0 ] && watch=
watch_idle=${BENCH_WATCH_IDLE:-10000}
watch_watchers=${BENCH_WATCH_WATCHERS:-1000}
watch_rate=${BENCH_WATCH_RATE:-1000}
watch_dur=${BENCH_WATCH_DURATION:-10}
watch_conns=${BENCH_WATCH_CONNECTIONS:-64}
watch_pairs=${BENCH_WATCH_PAIRS:-2}
leases=${BENCH_LEASES:-}
[ "$leases" = 0 ] && leases=
leases_count=${BENCH_LEASES_COUNT:-10000}
leases_ttl=${BENCH_LEASES_TTL:-30s}
leases_conns=${BENCH_LEASES_CONNECTIONS:-64}
leases_dur=${BENCH_LEASES_DURATION:-10}
leases_rounds=${BENCH_LEASES_ROUNDS:-3}
lock_clients=${BENCH_LOCK_CLIENTS:-16}
lock_ttl=${BENCH_LOCK_TTL:-10s}
read -r -a node_flags <<<"${BENCH_NODE_FLAGS:-}"
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
	for pid in "${pids[@]}"; do [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do [ -z "$pid" ] || wait "$pid" 2>/dev/null || true; done
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

# start_node I: starts node I (1-3) in the background, with its data in
# $node_data/nI and the flags BENCH_NODE_FLAGS and node_extra; its pid goes
# to pids[I-1].
node_data=$work
node_extra=()
start_node() {
	local i=$1 j join=()
	for j in 1 2 3; do [ "$j" = "$i" ] || join+=("${node_addrs[$((j - 1))]}"); done
	"$bin" serve --id "n$i" --data-dir "$node_data/n$i" \
		--http-addr "${node_addrs[$((i - 1))]}" --raft-addr "127.0.0.1:$((base + 1000 + i))" \
		--bootstrap-expect 3 --join "$(IFS=,; echo "${join[*]}")" \
		--pprof --log-level warn "${node_flags[@]}" "${node_extra[@]}" >>"$work/n$i.log" 2>&1 &
	pids[i - 1]=$!
}

# preload: writes every key of the key space once.
preload() {
	"$bin" bench --addr "$addrs" --preload-only --keys "$keys" --value-size "$value_size" --connections 64 2>&1 |
		sed 's/^raftkv bench: /bench: /' >&2
}

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
			BENCH_WRK_OUT="$work/wrk.$j" BENCH_SEED=$RANDOM BENCH_KEYS=${wrk_keys:-$keys} BENCH_VALUE_SIZE=$value_size \
				wrk -t1 -c"$conns" -d"${per}s" --timeout 10s -s "scripts/bench/$script.lua" "${urls[$j]}" \
				>"$work/wrk.$j.log" 2>&1 || { cat "$work/wrk.$j.log" >&2; die "wrk failed"; }
			outs+=("$work/wrk.$j")
		done
		merge_wrk seq "${outs[@]}"
		return
	fi
	for j in "${!urls[@]}"; do
		c=$((conns / n + (j < conns % n ? 1 : 0)))
		BENCH_WRK_OUT="$work/wrk.$j" BENCH_SEED=$RANDOM BENCH_KEYS=${wrk_keys:-$keys} BENCH_VALUE_SIZE=$value_size \
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

# cpu_ticks: "busy total" jiffies of the whole machine; proc_ticks PID:
# user+system jiffies of one process.
cpu_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# --- watches (BENCH_WATCH) -----------------------------------------------------

# start_cluster NAME FLAGS...: three fresh nodes, data in $work/NAME, with
# FLAGS after BENCH_NODE_FLAGS; returns once every node is ready.
start_cluster() {
	node_data=$work/$1
	shift
	node_extra=("$@")
	local i a
	for i in 1 2 3; do start_node "$i"; done
	for a in "${node_addrs[@]}"; do wait_up "http://$a/readyz"; done
}

# stop_cluster: stops the three nodes, if running, and waits for them.
stop_cluster() {
	local i
	for i in 0 1 2; do [ -z "${pids[$i]:-}" ] || kill -TERM "${pids[$i]}" 2>/dev/null || true; done
	for i in 0 1 2; do
		[ -z "${pids[$i]:-}" ] || wait "${pids[$i]}" 2>/dev/null || true
		pids[i]=""
	done
}

# nodes_ticks: the user + system jiffies of the three nodes together.
nodes_ticks() {
	local i t=0
	for i in 0 1 2; do t=$((t + $(proc_ticks "${pids[$i]}"))); done
	echo "$t"
}

# json_in OBJECT FIELD: the number FIELD inside the JSON object OBJECT.
json_in() { sed -n "s/.*\"$1\":{[^}]*\"$2\":\([-0-9.e+]*\).*/\1/p"; }

# median: the median of the numbers on stdin, one a line.
median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# watch_phase: the watch measurements (see the top of this file). It sets
# watch_rc to 1 when a watcher missed an acknowledged write.
watch_rc=0
watch_phase() {
	local need hard maxw=() max_watchers t0 wall c h p i order flags cpu
	hz=$(getconf CLK_TCK)
	need=$((watch_idle + 1024))
	if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
		hard=$(ulimit -Hn)
		if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
			die "the watch phase needs $need open files per process ($watch_idle watchers + 1024); the hard limit (ulimit -Hn) is $hard"
		fi
		ulimit -n "$need"
	fi
	max_watchers=$((watch_idle > watch_watchers ? watch_idle : watch_watchers))
	[ "$max_watchers" -le 10000 ] || maxw=(--max-watchers "$max_watchers")
	stop_cluster # the suite's, if it ran

	echo "bench: watches: $watch_idle idle watchers on n1 of a fresh cluster" >&2
	start_cluster watch "${maxw[@]}"
	"$bin" bench --addr "${node_addrs[0]}" --workload watch-idle --watchers "$watch_idle" --json >"$work/watch.idle" ||
		die "raftkv bench --workload watch-idle failed"
	preload
	echo "bench: watches: $watch_watchers watchers over the nodes, $watch_rate puts/s for ${watch_dur}s" >&2
	local node_t0=() busy0 total0 busy1 total1
	for i in 0 1 2; do node_t0+=("$(proc_ticks "${pids[$i]}")"); done
	read -r busy0 total0 < <(cpu_ticks)
	t0=$(date +%s%N)
	if ! "$bin" bench --addr "$addrs" --workload watch-delay --watchers "$watch_watchers" --rate "$watch_rate" \
		--duration "${watch_dur}s" --warmup 1s --connections "$watch_conns" --value-size "$value_size" --json \
		>"$work/watch.delay" 2>"$work/watch.delay.err"; then
		grep -q '"events_expected"' "$work/watch.delay" || { cat "$work/watch.delay.err" >&2; die "raftkv bench --workload watch-delay failed"; }
		watch_rc=1
	fi
	wall=$(($(date +%s%N) - t0))
	read -r busy1 total1 < <(cpu_ticks)
	cpu="machine $(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v n="$(nproc)" 'BEGIN { printf "%.0f%% of %d CPUs busy", 100 * b / t, n }')"
	for i in 0 1 2; do
		cpu+=", n$((i + 1)) $(awk -v d=$(($(proc_ticks "${pids[$i]}") - node_t0[i])) -v hz="$hz" -v w="$wall" \
			'BEGIN { printf "%.0f%%", 100 * d / hz / (w / 1e9) }')"
	done
	stop_cluster

	for p in $(seq "$watch_pairs"); do
		order="on off"
		[ $((p % 2)) = 1 ] || order="off on"
		for h in $order; do
			flags=("${maxw[@]}")
			[ "$h" = on ] || flags+=(--watch-history 0)
			echo "bench: watches: history $h (pair $p of $watch_pairs): wrk put at 64 and 256 connections" >&2
			start_cluster "history-$h-$p" "${flags[@]}"
			preload
			for c in 64 256; do
				# "ops/s p50 p99 errors" and the nodes' CPU per put, in
				# microseconds (user + system of the three, over the ops).
				local cpu0 cpu1 line
				cpu0=$(nodes_ticks)
				line=$(run_wrk put "$c" "$dur" "${nodes[@]}")
				cpu1=$(nodes_ticks)
				echo "$line $(awk -v d=$((cpu1 - cpu0)) -v hz="$hz" -v ops="${line%% *}" -v s="$dur" \
					'BEGIN { if (ops > 0) printf "%.0f", 1e6 * d / hz / (ops * s); else print 0 }')" >"$work/history.$h.$c.$p"
			done
			curl -fsS "http://${node_addrs[0]}/metrics" | awk '/^raftkv_watch_history_(events|oldest_index) / { printf "%s%.0f", sep, $2; sep = " " }' \
				>"$work/history.$h.events.$p"
			stop_cluster
		done
	done

	local idle delay ops
	idle=$(cat "$work/watch.idle")
	delay=$(cat "$work/watch.delay")
	echo
	echo "raftkv make bench, watches: $(nproc) CPUs, $("$bin" version), ${value_size}-byte values${BENCH_NODE_FLAGS:+, nodes with $BENCH_NODE_FLAGS}"
	echo
	echo "history on and off: wrk put, $watch_pairs pair(s) of fresh clusters (order on-off, off-on, ...), ${dur}s each"
	echo "ops/s of each run, and on/off of each pair (pairs run back to back, so their ratio is steadier than the runs);"
	echo "CPU/put: the three nodes' CPU time per put, in microseconds (the machine's other tenants move it less than ops/s)"
	printf '%6s  %-24s %-24s %-20s %7s  %-20s %7s\n' conns "history on: ops/s" "history off: ops/s" "on/off per pair" median \
		"CPU/put on | off" "on/off"
	for c in 64 256; do
		local on=() off=() ratios=() con=() coff=() a b ca cb
		for p in $(seq "$watch_pairs"); do
			read -r a _ _ _ ca <"$work/history.on.$c.$p"
			read -r b _ _ _ cb <"$work/history.off.$c.$p"
			on+=("$a")
			off+=("$b")
			con+=("$ca")
			coff+=("$cb")
			ratios+=("$(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print 0 }')")
		done
		ca=$(printf '%s\n' "${con[@]}" | median)
		cb=$(printf '%s\n' "${coff[@]}" | median)
		printf '%6s  %-24s %-24s %-20s %7s  %-20s %7s\n' "$c" "${on[*]}" "${off[*]}" "${ratios[*]}" \
			"$(printf '%.3f' "$(printf '%s\n' "${ratios[@]}" | median)")" "$(printf '%.0f | %.0f' "$ca" "$cb")" \
			"$(awk -v a="$ca" -v b="$cb" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }')"
	done
	echo "history kept by n1 after each history-on run (events, oldest index): $(for p in $(seq "$watch_pairs"); do printf '[%s] ' "$(cat "$work/history.on.events.$p")"; done)"
	echo "target: history on costs at most 10% of put throughput (on/off >= 0.900) at 64 and 256 connections"
	echo
	pw() { json_in per_watcher "$1" <<<"$idle"; }
	echo "idle watchers: $(json_field opened <<<"$idle") of $watch_idle opened on n1 in $(printf '%.1f' "$(json_field open_s <<<"$idle")") s; per watcher:" \
		"resident $(awk -v b="$(pw rss_bytes)" 'BEGIN { printf "%.1f", b / 1024 }') KiB," \
		"Go heap+stacks $(awk -v b="$(pw heap_stack_bytes)" 'BEGIN { printf "%.1f", b / 1024 }') KiB" \
		"(heap $(awk -v b="$(pw heap_bytes)" 'BEGIN { printf "%.1f", b / 1024 }')," \
		"stacks $(awk -v b="$(pw stack_bytes)" 'BEGIN { printf "%.1f", b / 1024 }') KiB), $(pw goroutines) goroutines;" \
		"errors $(json_field errors_total <<<"$idle")"
	local obj
	for obj in before open closed; do
		printf '  n1 %-7s resident %6.1f MiB, heap in use %6.1f MiB, stacks %6.1f MiB, %s goroutines, %s watchers\n' "$obj" \
			"$(awk -v b="$(json_in "$obj" rss_bytes <<<"$idle")" 'BEGIN { print b / 1048576 }')" \
			"$(awk -v b="$(json_in "$obj" heap_inuse_bytes <<<"$idle")" 'BEGIN { print b / 1048576 }')" \
			"$(awk -v b="$(json_in "$obj" stack_inuse_bytes <<<"$idle")" 'BEGIN { print b / 1048576 }')" \
			"$(json_in "$obj" goroutines <<<"$idle")" "$(json_in "$obj" watchers <<<"$idle")"
	done
	echo "target: at most 32 KiB per idle watcher"
	echo
	echo "watch delay: $(json_field opened <<<"$delay") watchers over 3 nodes, $(printf '%.0f' "$(json_field writes_per_sec <<<"$delay")") puts/s" \
		"(asked $watch_rate, $(json_field writes_late <<<"$delay") late, $(json_field writes_unsent <<<"$delay") not sent, $watch_conns writers), ${watch_dur}s measured"
	echo "  delay from a write's answer to its event, ms: p50 $(json_in delay_ms p50 <<<"$delay")" \
		"p99 $(json_in delay_ms p99 <<<"$delay") max $(json_in delay_ms max <<<"$delay")" \
		"(write latency p50 $(json_in write_latency_ms p50 <<<"$delay") p99 $(json_in write_latency_ms p99 <<<"$delay"))"
	echo "  events: $(json_field events_received <<<"$delay") received of $(json_field events_expected <<<"$delay") expected," \
		"$(json_field events_missing <<<"$delay") missing, $(json_field events_duplicate <<<"$delay") duplicated," \
		"$(json_field events_early <<<"$delay") before their answer (counted as 0); $(json_field errors_total <<<"$delay") errors"
	echo "  CPU meanwhile: $cpu of one CPU; the load process $(json_field load_cpu <<<"$delay") CPUs while writing"
	echo "target: p99 at most 100 ms at 1,000 puts/s with 1,000 watchers"
	if [ "$watch_rc" != 0 ]; then
		echo "watch-delay: WATCHERS MISSED ACKNOWLEDGED WRITES: $(cat "$work/watch.delay.err")"
	fi
}

# --- leases and locks (BENCH_LEASES) ---------------------------------------------

# leader_index: 0-2, the node that leads, as n1 sees it.
leader_index() {
	local l i
	l=$(curl -fsS "http://${node_addrs[0]}/v1/cluster" | sed -n 's/.*"leader_api":"\([^"]*\)".*/\1/p')
	for i in 0 1 2; do [ "${node_addrs[$i]}" = "$l" ] && echo "$i" && return 0; done
	die "no leader"
}

# commit_index I: node I's (0-2) raft commit index.
commit_index() { curl -fsS "http://${node_addrs[$1]}/metrics" | awk '/^raftkv_raft_commit_index / { printf "%.0f", $2 }'; }

# lease_phase: the lease and lock measurements (see the top of this file).
# It sets lease_rc to 1 when a run lost a lease or saw a lock held twice.
lease_rc=0
lease_phase() {
	local r l t0 t1 k0 k1 c0 c1 line out wl args
	hz=$(getconf CLK_TCK)
	stop_cluster # the suite's, if it ran
	echo "bench: leases: a fresh cluster, $leases_rounds round(s)" >&2
	start_cluster leases
	for r in $(seq "$leases_rounds"); do
		# 1. Small puts at the keepalives' connections, with the leader's
		# CPU and the entries it committed (warm-up included, at the same
		# load: puts per entry counts the warm-up's at the measured rate).
		echo "bench: leases: round $r: put at $leases_conns connections, 16-byte values" >&2
		l=$(leader_index)
		c0=$(commit_index "$l")
		k0=$(proc_ticks "${pids[$l]}")
		t0=$(date +%s%N)
		out=$("$bin" bench --addr "$addrs" --workload put --connections "$leases_conns" --duration "${dur}s" --warmup "$warmup" \
			--keys "$keys" --value-size 16 --json) || die "raftkv bench --workload put failed"
		t1=$(date +%s%N)
		k1=$(proc_ticks "${pids[$l]}")
		c1=$(commit_index "$l")
		awk -v ops="$(json_field ops_per_sec <<<"$out")" -v p50="$(json_field p50 <<<"$out")" -v p99="$(json_field p99 <<<"$out")" \
			-v errs="$(json_field errors_total <<<"$out")" -v d=$((k1 - k0)) -v hz="$hz" -v w=$((t1 - t0)) -v e=$((c1 - c0)) \
			-v secs="$dur" 'BEGIN { cpu = d / hz / (w / 1e9); printf "%.0f %.3f %.3f %d %.2f %.2f\n", ops, p50, p99, errs, cpu, (e > 0 ? ops * (secs + 1) / e : 0) }' \
			>"$work/lease.put.$r"

		# 2. Keepalives.
		echo "bench: leases: round $r: leases-keepalive, $leases_count leases, $leases_conns connections, ${leases_dur}s" >&2
		if ! "$bin" bench --addr "$addrs" --workload leases-keepalive --leases "$leases_count" --ttl "$leases_ttl" \
			--connections "$leases_conns" --duration "${leases_dur}s" --warmup "$warmup" --json \
			>"$work/lease.ka.$r" 2>"$work/lease.ka.$r.err"; then
			grep -q '"leases_lost"' "$work/lease.ka.$r" || { cat "$work/lease.ka.$r.err" >&2; die "raftkv bench --workload leases-keepalive failed"; }
			lease_rc=1
		fi

		# 3. One client's put.
		echo "bench: leases: round $r: put at 1 connection" >&2
		run_rb put 1 "$dur" "$addrs" >"$work/lease.put1.$r"

		# 4, 5. Locks.
		for wl in lock-uncontended lock-contended; do
			args=(--connections 1)
			[ "$wl" = lock-contended ] && args=(--connections "$lock_clients")
			echo "bench: leases: round $r: $wl, ${args[1]} worker(s), ${dur}s" >&2
			if ! "$bin" bench --addr "$addrs" --workload "$wl" --ttl "$lock_ttl" "${args[@]}" --duration "${dur}s" --warmup "$warmup" --json \
				>"$work/lease.$wl.$r" 2>"$work/lease.$wl.$r.err"; then
				grep -q '"overlaps"' "$work/lease.$wl.$r" || { cat "$work/lease.$wl.$r.err" >&2; die "raftkv bench --workload $wl failed"; }
				lease_rc=1
			fi
		done
	done
	stop_cluster

	# The table: one line per round, then the medians.
	local f ka pops pp50 pp99 perrs pcpu pper
	echo
	echo "raftkv make bench, leases and locks: $(nproc) CPUs, $("$bin" version), ${leases_rounds} round(s) on one fresh cluster"
	echo "keepalives: $leases_count leases of TTL $leases_ttl, $leases_conns connections, ${leases_dur}s; puts: 16-byte values, ${dur}s;"
	echo "locks: TTL $lock_ttl, uncontended 1 worker, contended $lock_clients workers, ${dur}s each"
	echo
	echo "keepalives against small puts, same client and connections ($leases_conns); CPU: the leader's, in CPUs;"
	echo "per entry: operations per raft entry the leader committed (puts: warm-up included, approximate)"
	printf '%5s  %9s %7s %7s %5s %7s %6s  %12s %7s %7s %5s %7s %6s %7s  %6s %8s %6s\n' round puts/s p50 p99 cpu us/put /entry \
		keepalives/s p50 p99 cpu us/ka /entry ka/put lost gap_ms errs
	for r in $(seq "$leases_rounds"); do
		read -r pops pp50 pp99 perrs pcpu pper <"$work/lease.put.$r"
		f="$work/lease.ka.$r"
		ka=$(json_field keepalives_per_sec <"$f")
		printf '%5s  %9.0f %7.2f %7.2f %5.2f %7.0f %6.2f  %12.0f %7.2f %7.2f %5.2f %7.0f %6.2f %7.3f  %6s %8.0f %6s\n' "$r" \
			"$pops" "$pp50" "$pp99" "$pcpu" "$(awk -v c="$pcpu" -v o="$pops" 'BEGIN { print (o > 0 ? 1e6 * c / o : 0) }')" "$pper" \
			"$ka" "$(json_in latency_ms p50 <"$f")" "$(json_in latency_ms p99 <"$f")" "$(json_field leader_cpu <"$f")" \
			"$(awk -v c="$(json_field leader_cpu <"$f")" -v o="$ka" 'BEGIN { print (o > 0 ? 1e6 * c / o : 0) }')" \
			"$(json_field ops_per_entry <"$f")" "$(awk -v a="$ka" -v b="$pops" 'BEGIN { print (b > 0 ? a / b : 0) }')" \
			"$(json_field leases_lost <"$f")" "$(json_field max_gap_ms <"$f")" "$((perrs + $(json_field errors_total <"$f")))" \
			| tee -a "$work/lease.table"
	done
	echo
	echo "locks: uncontended cycle (acquire + release + revoke of its lease) against one client's put; contended: handoffs"
	printf '%5s  %8s %8s  %9s %8s %8s %8s %7s %9s  %10s %8s %8s %7s %9s  %5s\n' round put1_p50 put1_p99 cycles/s cyc_p50 cyc_p99 acq_p50 \
		cpu entries/c handoffs/s acq_p50 acq_p99 cpu entries/a viol
	for r in $(seq "$leases_rounds"); do
		local u="$work/lease.lock-uncontended.$r" c="$work/lease.lock-contended.$r"
		read -r _ pp50 pp99 _ <"$work/lease.put1.$r"
		printf '%5s  %8.2f %8.2f  %9.0f %8.2f %8.2f %8.2f %7.2f %9.2f  %10.0f %8.2f %8.2f %7.2f %9.2f  %5s\n' "$r" "$pp50" "$pp99" \
			"$(json_field acquisitions_per_sec <"$u")" "$(json_in cycle_ms p50 <"$u")" "$(json_in cycle_ms p99 <"$u")" "$(json_in acquire_ms p50 <"$u")" \
			"$(json_field leader_cpu <"$u")" "$(awk -v e="$(json_in cluster entries <"$u")" -v n="$(json_field acquisitions <"$u")" 'BEGIN { print (n > 0 ? e / n : 0) }')" \
			"$(json_field acquisitions_per_sec <"$c")" "$(json_in acquire_ms p50 <"$c")" "$(json_in acquire_ms p99 <"$c")" \
			"$(json_field leader_cpu <"$c")" "$(awk -v e="$(json_in cluster entries <"$c")" -v n="$(json_field acquisitions <"$c")" 'BEGIN { print (n > 0 ? e / n : 0) }')" \
			"$(($(json_field overlaps <"$u") + $(json_field token_regressions <"$u") + $(json_field overlaps <"$c") + $(json_field token_regressions <"$c")))" \
			| tee -a "$work/lock.table"
	done
	echo
	col() { awk -v c="$2" '{ print $c }' "$1" | median; }
	echo "medians of $leases_rounds round(s):"
	printf '  small puts at %s connections: %.0f/s (leader %.2f CPUs, %.0f us CPU per put, %.2f puts per entry)\n' "$leases_conns" \
		"$(col "$work/lease.table" 2)" "$(col "$work/lease.table" 5)" "$(col "$work/lease.table" 6)" "$(col "$work/lease.table" 7)"
	printf '  keepalives of %s leases: %.0f/s, p50 %.2f ms, p99 %.2f ms (leader %.2f CPUs, %.0f us CPU per keepalive, %.2f keepalives per entry)\n' \
		"$leases_count" "$(col "$work/lease.table" 8)" "$(col "$work/lease.table" 9)" "$(col "$work/lease.table" 10)" \
		"$(col "$work/lease.table" 11)" "$(col "$work/lease.table" 12)" "$(col "$work/lease.table" 13)"
	printf '  keepalives/s over puts/s: %.3f; every lease kept alive every %.2f s (TTL %s); leases lost: %s in all\n' \
		"$(col "$work/lease.table" 14)" "$(awk -v n="$leases_count" -v k="$(col "$work/lease.table" 8)" 'BEGIN { print (k > 0 ? n / k : 0) }')" \
		"$leases_ttl" "$(awk '{ s += $15 } END { print s }' "$work/lease.table")"
	printf '  one client: put p50 %.2f ms; lock cycle p50 %.2f ms, p99 %.2f ms (%.1f puts), %.0f cycles/s, %.2f entries per cycle\n' \
		"$(col "$work/lock.table" 2)" "$(col "$work/lock.table" 5)" "$(col "$work/lock.table" 6)" \
		"$(awk -v a="$(col "$work/lock.table" 5)" -v b="$(col "$work/lock.table" 2)" 'BEGIN { print (b > 0 ? a / b : 0) }')" \
		"$(col "$work/lock.table" 4)" "$(col "$work/lock.table" 9)"
	printf '  %s clients on one lock: %.0f handoffs/s, acquire p50 %.2f ms, p99 %.2f ms (leader %.2f CPUs, %.2f entries per handoff)\n' \
		"$lock_clients" "$(col "$work/lock.table" 10)" "$(col "$work/lock.table" 11)" "$(col "$work/lock.table" 12)" \
		"$(col "$work/lock.table" 13)" "$(col "$work/lock.table" 14)"
	if [ "$lease_rc" != 0 ]; then
		echo "LEASES LOST OR LOCK VIOLATED:"
		cat "$work"/lease.*.err >&2 || true
	fi
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
	put) [[ $workloads == *" put "* || $workloads == *" put-hot "* ]] ;;
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
	store.wrk)
		if [ "$wl" = put-hot ]; then
			line=$(wrk_keys=$hot_keys run_wrk put "$c" "$dur" "${nodes[@]}")
		else
			line=$(run_wrk "$wl" "$c" "$dur" "${nodes[@]}")
		fi
		;;
	ceiling.raftkv-bench) line=$(run_rb "$wl" "$c" "$ceil_dur" "http://$null_addr") ;;
	store.raftkv-bench) line=$(run_rb "$wl" "$c" "$dur" "$addrs") ;;
	esac
	echo "$line" >"$work/res.$target.$tool.$wl.$c"
}

started=$(date +%s)
if [ "$watch" = only ] || [ "$leases" = only ]; then
	[ -z "$watch" ] || watch_phase
	[ -z "$leases" ] || lease_phase
	echo "bench: done in $(($(date +%s) - started))s" >&2
	exit $((watch_rc | lease_rc))
fi
for i in 1 2 3; do start_node "$i"; done
"$bin" bench --serve-null "$null_addr" --value-size "$value_size" >"$work/null.log" 2>&1 &
pids+=($!)
for a in "${node_addrs[@]}"; do wait_up "http://$a/readyz"; done
wait_up "http://$null_addr/"
preload

for c in $conns_list; do
	cell ceiling wrk put "$c"
	cell store wrk put "$c"
	cell ceiling wrk get "$c"
	cell store wrk get "$c"
	cell store wrk get-stale "$c" # its ceiling is get's: the null server ignores the query
	for wl in put get mixed; do cell ceiling raftkv-bench "$wl" "$c"; done
	for wl in put get get-stale mixed; do cell store raftkv-bench "$wl" "$c"; done
done
# Hot keys: wrk put over only BENCH_HOT_KEYS keys at BENCH_HOT_CONNECTIONS,
# against put's ceiling at the same connections (and spread put's rate).
if want wrk put-hot; then
	[ -f "$work/res.ceiling.wrk.put.$hot_conns" ] || cell ceiling wrk put "$hot_conns"
	[ -f "$work/res.store.wrk.put.$hot_conns" ] || cell store wrk put "$hot_conns"
	cell store wrk put-hot "$hot_conns"
fi
# One durable write on this machine: synced 4 KiB overwrites in the nodes'
# file system, for the one-client target below.
"$bin" bench --fsync "$work" --duration 2s --json >"$work/fsync.json" ||
	{ echo "bench: raftkv bench --fsync failed: no one-client target" >&2; rm -f "$work/fsync.json"; }
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
[ -f "$work/res.store.wrk.put-hot.$hot_conns" ] && row wrk put-hot put "$hot_conns"
if [ -f "$work/res.store.raftkv-bench.txn.16" ]; then
	row raftkv-bench txn txn 16
elif want raftkv-bench txn; then
	printf '%-10s %6s  %-13s %s\n' txn 16 raftkv-bench "unsupported: ${txn_out#raftkv: bench: }"
fi
echo
echo "ops/s counts 2xx answers only; errors are every other answer or failed request."
echo "ceiling: the same client, connections and request shape against raftkv bench --serve-null."
if want wrk put-hot; then
	echo "put-hot: wrk put over only $hot_keys keys (every writer on the same few keys)."
fi

# --- the targets ------------------------------------------------------------------
# Each as a ratio measured in this run, so that machines and days compare
# (docs/performance.md, "Against the ratio targets").
# frac TOOL WORKLOAD SHAPE CONNS: the store's ops/s over its ceiling, or "".
frac() {
	local ops cops
	[ -f "$work/res.store.$1.$2.$4" ] && [ -f "$work/res.ceiling.$1.$3.$4" ] || return 0
	read -r ops _ <"$work/res.store.$1.$2.$4"
	read -r cops _ <"$work/res.ceiling.$1.$3.$4"
	awk -v a="$ops" -v b="$cops" 'BEGIN { if (b > 0) printf "%.3f", a / b }'
}
# target NAME VALUE OP GOAL: one line; VALUE "" (not measured) prints nothing.
target() {
	[ -n "$2" ] || return 0
	local met
	met=$(awk -v v="$2" -v op="$3" -v g="$4" 'BEGIN { print ((op == ">=" ? v >= g : v <= g) ? "yes" : "no") }')
	printf '  %-52s %8s   target %s %-6s %s\n' "$1" "$2" "$3" "$4" "$met"
}
echo
echo "targets, each a ratio measured in this run:"
target "puts at 64 connections (wrk), of ceiling" "$(frac wrk put put 64)" ">=" 0.22
target "puts at 256 connections (wrk), of ceiling" "$(frac wrk put put 256)" ">=" 0.36
target "lin. gets at 64 connections (wrk), of ceiling" "$(frac wrk get get 64)" ">=" 0.40
if [ -f "$work/res.store.wrk.put-hot.$hot_conns" ] && [ -f "$work/res.store.wrk.put.$hot_conns" ]; then
	read -r hot _ <"$work/res.store.wrk.put-hot.$hot_conns"
	read -r spread _ <"$work/res.store.wrk.put.$hot_conns"
	target "puts on $hot_keys hot keys / spread puts, $hot_conns conns" \
		"$(awk -v a="$hot" -v b="$spread" 'BEGIN { if (b > 0) printf "%.3f", a / b }')" ">=" 0.80
fi
fsync_p50=
[ -f "$work/fsync.json" ] && fsync_p50=$(json_in latency_ms p50 <"$work/fsync.json")
if [ -f "$work/res.store.wrk.put.1" ] && [ -n "$fsync_p50" ]; then
	read -r _ p50_1 _ <"$work/res.store.wrk.put.1"
	target "one client, put p50 ms (wrk)" "$p50_1" "<=" \
		"$(awk -v f="$fsync_p50" 'BEGIN { printf "%.3f", 2 * f + 0.3 }')"
	echo "  (the one-client target is two fsyncs + 0.3 ms: a synced 4 KiB overwrite in the nodes' file system took p50 $fsync_p50 ms in this run)"
fi

if [ -n "$profile" ]; then
	leader=$(curl -fsS "http://${node_addrs[0]}/v1/cluster" | sed -n 's/.*"leader_api":"\([^"]*\)".*/\1/p')
	[ -n "$leader" ] || die "no leader to profile"
	hz=$(getconf CLK_TCK)
	echo
	pwl=${BENCH_PROFILE_WORKLOAD:-put}
	for c in ${BENCH_PROFILE_CONNECTIONS:-64 256}; do
		echo "bench: profiling the three nodes for 5s under wrk $pwl at $c connections" >&2
		run_wrk "$pwl" "$c" 8 "${nodes[@]}" >"$work/profile.load" &
		load=$!
		sleep 1
		read -r busy0 total0 < <(cpu_ticks)
		node_t0=()
		ppids=()
		for i in 0 1 2; do
			node_t0+=("$(proc_ticks "${pids[$i]}")")
			curl -fsS -o "$profile.n$((i + 1)).c$c.pprof" "http://${node_addrs[$i]}/debug/pprof/profile?seconds=5" &
			ppids+=($!)
		done
		for p in "${ppids[@]}"; do wait "$p" || die "profile failed"; done
		read -r busy1 total1 < <(cpu_ticks)
		node_d=()
		for i in 0 1 2; do node_d+=($(($(proc_ticks "${pids[$i]}") - node_t0[i]))); done
		usage="machine $(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v n="$(nproc)" \
			'BEGIN { printf "%.0f%% of %d CPUs busy", 100 * b / t, n }')"
		files=""
		for i in 0 1 2; do
			role=follower
			[ "${node_addrs[$i]}" = "$leader" ] && role=leader
			usage+=", n$((i + 1)) ($role) $(awk -v d="${node_d[$i]}" -v hz="$hz" \
				'BEGIN { printf "%.0f%%", 100 * d / hz / 5 }') of one CPU"
			files+=" $profile.n$((i + 1)).c$c.pprof"
		done
		wait "$load" || true
		read -r pops pp50 pp99 perrs <"$work/profile.load"
		echo "CPU profiles of the three nodes for 5s under wrk $pwl at $c connections:$files"
		echo "  load while profiled: $pops ops/s, p50 ${pp50}ms, p99 ${pp99}ms, $perrs errors"
		echo "  CPU in that window: $usage"
		echo "  nodes' CPU per $pwl: $(awk -v d=$((node_d[0] + node_d[1] + node_d[2])) -v hz="$hz" -v ops="$pops" \
			'BEGIN { if (ops > 0) printf "%.0f us", 1e6 * d / hz / (ops * 5); else print "-" }') (all three, over the 5 s window)"
	done
	echo "read them with: go tool pprof -top $bin FILE (one node), or -top $bin FILE FILE FILE (the cluster)"
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
[ -z "$watch" ] || watch_phase
[ -z "$leases" ] || lease_phase
echo "bench: done in $(($(date +%s) - started))s" >&2
exit $((watch_rc | lease_rc))
