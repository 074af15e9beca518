#!/usr/bin/env bash
# Horizontal scale benchmark: REGISTER throughput of Switchboard's registrar with bindings in
# Redis (--redis-url) for 1, 2 and 3 replicas on this machine, beside the in-memory store with
# one replica.
#
# Every "call" is one registration with digest auth, driven by sipp with bench/register's
# scenario (register_auth.xml): REGISTER -> 401 -> REGISTER with Authorization -> 200. The users,
# the registrar config and the scenario come from bench/register (users.py,
# registrar_config.py, register_auth.xml); this script only adds the replicas and Redis.
#
# Cases, in order: memory-1 (MemoryStore, one replica), then redis-N for N in REPLICAS (one
# redis-server started by this script, flushed before each case). Replica i listens on
# 127.0.0.i:PORT (UDP and TCP) and on 127.0.0.1:(HTTP_BASE+i) for /metrics, with
# --replica rI --peer for its siblings. For each target rate, one sipp per replica drives a
# disjoint slice of the users at RATE/N each, all at once; the case's figure is the sum over the
# sipps of successful registrations per second.
#
# Output columns per case and rate: case, target (calls/s asked of all sipps together),
# achieved/s (sum over the sipps of successful registrations / that sipp's elapsed seconds),
# ok, failed (failed + never completed), fail%, secs (longest sipp run), retrans (sipp UDP
# retransmissions, the first sign of overload), reg% / redis% / sipp% / other% (CPU in % of one
# core averaged over the run: all registrar replicas, redis-server, all sipps, the rest of the
# machine), reg_us (registrar CPU time of all replicas per successful registration, in
# microseconds, from /proc/PID/stat utime+stime), redis_us (redis-server's CPU per successful
# registration), cmds/reg (Redis commands per successful registration, from INFO stats).
# Then per case the best sustained rate (highest achieved with < MAX_FAIL_PCT % failures) with
# the median CPU figures over those runs, m_cmds and m_rtt (Redis commands and round trips per
# registration counted under MONITOR on a slow probe run, see PROBE_RATE) and the ratios: each
# Redis case's rate and reg_us to memory-1's, and redis-2 / redis-3's rate to redis-1's.
# Raw data: results.txt (one line per run), summary.txt, and per-run sipp files, logs and
# configs in the run directory (kept by default; its path is printed at the end).
#
# Usage:
#   bench/scale/run.sh                              # memory-1, redis-1, redis-2, redis-3
#   RATES=2000 DURATION=5 bench/scale/run.sh        # a smoke run
#   BUILD=0 RATES="10000 20000 30000" DURATION=10 bench/scale/run.sh
#   REPLICAS="1 3" SKIP_MEMORY=1 bench/scale/run.sh
#   BUILD=0 RATES=10000 REPLICAS=1 PROBE_SECS=0 ROUNDS=6 bench/scale/run.sh   # redis-1 / memory-1
#
# Environment (all optional):
#   USERS=10000          users (bench/register/users.py: user00000.., deterministic passwords),
#                        split in contiguous slices, one per replica's sipp
#   RATES="5000 10000"   target rates (registrations/s, all replicas together), each run once
#   DURATION=10          seconds' worth of calls per rate (each sipp: -m RATE/N*DURATION)
#   REPLICAS="1 2 3"     replica counts of the Redis cases (at most 9)
#   SKIP_MEMORY=0        1: no memory-1 case (the ratios to it are then left out)
#   ROUNDS=1             times every case is run (1..20), the cases alternating round by round
#                        (memory-1, redis-1, memory-1, redis-1, ...), so a drift of the machine
#                        falls on both; CPU figures are medians over all rounds, and each Redis
#                        case's reg_us ratio to memory-1 is also given round by round (one
#                        round's pair ran a minute apart; the runs of one binary scatter by
#                        ±15 % on a shared 2-core machine)
#   MAX_FAIL_PCT=1       a run counts as sustained if failures < this percentage
#   PORT=25160           SIP port (UDP and TCP) of every replica, on 127.0.0.1, 127.0.0.2, ...
#   HTTP_BASE=25170      replica i serves HTTP on 127.0.0.1:(HTTP_BASE+i)
#   SIPP_PORT_BASE=25180 sipp i sends from 127.0.0.1:(SIPP_PORT_BASE+i)
#   REDIS_PORT=25199     redis-server's port on 127.0.0.1
#   REDIS_SERVER=redis-server   the redis-server binary
#   REDIS_PREFIX=bench   --redis-prefix
#   BUILD=1              0: do not run `cargo build --release -p switchboard-registrar` first
#   REGISTRAR_BIN=<target dir>/release/switchboard-registrar
#   REGISTRAR_ARGS=      extra arguments for every replica
#   REGISTRAR_LOG=info   their RUST_LOG
#   READY_TIMEOUT=20     seconds a replica (or redis-server) gets to answer after it is started
#   BUSY_OTHER_PCT=40    flag a run when CPU not used by the registrars, redis or sipp exceeds
#                        this (% of one core)
#   PROBE_RATE=200       after a Redis case's rates, PROBE_RATE registrations/s for PROBE_SECS
#   PROBE_SECS=3         seconds through replica 1 under Redis MONITOR (redis_monitor.py), and
#                        as long idle (the sweepers' background commands, subtracted): the
#                        commands and round trips per registration, by command (0: no probe)
#   KEEP=1               0: delete the run directory at exit
#   WORKDIR=             use this directory instead of a new temp dir
#
# Exit status: 0 if every case ran; 1 if a replica or redis-server did not start or died; 2 on
# a usage error or a missing tool.
#
# Every process this script starts runs in its own session (setsid) under `timeout`, and is
# stopped (TERM, then KILL) by the exit trap; sipp runs are bounded by -m, -recv_timeout and an
# outer `timeout`. Helpers shared with bench/register and bench/proxy: bench/lib.sh.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
REG_BENCH="$REPO/bench/register"

USERS=${USERS:-10000}
RATES=${RATES:-"5000 10000"}
DURATION=${DURATION:-10}
REPLICAS=${REPLICAS:-"1 2 3"}
SKIP_MEMORY=${SKIP_MEMORY:-0}
MAX_FAIL_PCT=${MAX_FAIL_PCT:-1}
PORT=${PORT:-25160}
HTTP_BASE=${HTTP_BASE:-25170}
SIPP_PORT_BASE=${SIPP_PORT_BASE:-25180}
REDIS_PORT=${REDIS_PORT:-25199}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_PREFIX=${REDIS_PREFIX:-bench}
BUILD=${BUILD:-1}
REGISTRAR_BIN=${REGISTRAR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/switchboard-registrar}
REGISTRAR_ARGS=${REGISTRAR_ARGS:-}
REGISTRAR_LOG=${REGISTRAR_LOG:-info}
READY_TIMEOUT=${READY_TIMEOUT:-20}
BUSY_OTHER_PCT=${BUSY_OTHER_PCT:-40}
PROBE_RATE=${PROBE_RATE:-200}
PROBE_SECS=${PROBE_SECS:-3}
ROUNDS=${ROUNDS:-1}
KEEP=${KEEP:-1}
REALM=bench.test
# Shared by every replica, so any of them accepts a challenge another issued (as in a cluster).
NONCE_KEY=7e1f2a9c4b6d8e0f1a3c5e7092b4d6f8
# The address port_answers (sipsak) sends its OPTIONS probes from.
IP=127.0.0.1

[[ "$USERS" =~ ^[0-9]+$ && "$USERS" -ge 9 ]] || die "USERS must be an integer >= 9"
[[ "$PROBE_RATE" =~ ^[1-9][0-9]*$ && "$PROBE_SECS" =~ ^[0-9]+$ ]] || die "bad PROBE_RATE or PROBE_SECS"
check_duration_rates
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 && "$ROUNDS" -le 20 ]] || die "ROUNDS must be 1..20"
for n in $REPLICAS; do [[ "$n" =~ ^[1-9]$ ]] || die "bad replica count '$n' in REPLICAS (1..9)"; done
for p in "$PORT" "$HTTP_BASE" "$SIPP_PORT_BASE" "$REDIS_PORT"; do
	[[ "$p" =~ ^[0-9]+$ && "$p" -ge 1024 && "$p" -le 65000 ]] || die "bad port '$p'"
done
require_tools sipp sipsak python3 timeout setsid awk "$REDIS_SERVER" /usr/bin/time
build_registrar "$REPO"
# grep without -q reads the whole help: with pipefail, a large binary cut off by SIGPIPE
# would fail the check.
"$REGISTRAR_BIN" --help 2>/dev/null | grep -- '--redis-url' >/dev/null ||
	die "$REGISTRAR_BIN has no --redis-url: too old for this benchmark"

NRATES=$(wc -w <<<"$RATES")
NCPU=$(grep -c '^cpu[0-9]' /proc/stat)
HZ=$(getconf CLK_TCK)
SIPP_MAX_SECS=$((DURATION * 3 + 20))
SERVER_MAX_SECS=$((READY_TIMEOUT + NRATES * (SIPP_MAX_SECS + 5) + 60))
CASES=()
[[ "$SKIP_MEMORY" == 1 ]] || CASES+=(memory-1)
for n in $REPLICAS; do CASES+=("redis-$n"); done
REDIS_MAX_SECS=$(((${#CASES[@]} * ROUNDS + 1) * SERVER_MAX_SECS))

make_run_dir scale
bench_traps

# redis_cmd CMD...: one command to our redis-server; prints the reply (bulk strings as text).
redis_cmd() {
	python3 - "$REDIS_PORT" "$@" <<'EOF'
import socket, sys
port, args = int(sys.argv[1]), sys.argv[2:]
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a.encode()), a) for a in args)).encode())
    f = s.makefile("rb")
    line = f.readline().decode().rstrip("\r\n")
    if line.startswith("$") and int(line[1:]) >= 0:
        print(f.read(int(line[1:]) + 2)[:-2].decode())
    else:
        print(line)
except OSError as e:
    print("-ERR %s" % e)
    sys.exit(1)
EOF
}

# redis_commands: total_commands_processed so far ("NA" if Redis does not answer).
redis_commands() {
	redis_cmd INFO stats | awk -F: '$1 == "total_commands_processed" { gsub(/\r/, "", $2); print $2; found = 1 } END { if (!found) print "NA" }'
}

# ---------------------------------------------------------------- users and config
echo "# generating $USERS users in $RUN/users (bench/register/users.py)" >&2
python3 "$REG_BENCH/users.py" --out "$RUN/users" --count "$USERS" --realm "$REALM" || die "users.py failed"
# The config in a directory of its own (the registrar watches its directory), shared by every
# replica; registrar_config.py's config plus the shared nonce key.
mkdir -p "$RUN/config"
python3 "$REG_BENCH/registrar_config.py" --users "$RUN/users/users.tsv" --out "$RUN/config.tmp" \
	--realm "$REALM" --algorithms MD5 || die "registrar_config.py failed"
awk -v key="$NONCE_KEY" '{ print } /^hash:/ && !done { print "nonceKey: \"" key "\""; done = 1 }' \
	"$RUN/config.tmp" >"$RUN/config/registrar.yaml" && rm -f "$RUN/config.tmp"
grep -q '^nonceKey:' "$RUN/config/registrar.yaml" || die "could not add nonceKey to the config"

# split_users N: users.csv split into N contiguous slices $RUN/users/slice-N-I.csv (I = 1..N).
split_users() {
	local n=$1
	awk -v n="$n" -v dir="$RUN/users" -v total="$USERS" '
		NR == 1 { head = $0; next }
		{
			i = int((NR - 2) * n / total) + 1
			f = dir "/slice-" n "-" i ".csv"
			if (!(f in seen)) { print head > f; seen[f] = 1 }
			print > f
		}' "$RUN/users/users.csv"
}

# ---------------------------------------------------------------- redis-server
REDIS_SID=""
start_redis() {
	mkdir -p "$RUN/redis"
	if redis_cmd PING 2>/dev/null | grep -q PONG; then
		echo "something already answers PING on 127.0.0.1:$REDIS_PORT; stop it or set REDIS_PORT" >&2
		return 1
	fi
	spawn "$RUN/redis/stdout.log" "$REDIS_MAX_SECS" "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 \
		--save "" --appendonly no --dir "$RUN/redis" --logfile "$RUN/redis/redis.log"
	REDIS_SID=$SPAWNED_PID
	local deadline=$((SECONDS + READY_TIMEOUT))
	while ((SECONDS < deadline)); do
		redis_cmd PING 2>/dev/null | grep -q PONG && return 0
		kill -0 "$REDIS_SID" 2>/dev/null || break
		sleep 0.1
	done
	echo "redis-server did not answer PING:" >&2
	tail -n 20 "$RUN/redis/redis.log" >&2
	return 1
}

# ---------------------------------------------------------------- replicas
REPLICA_SIDS=()
# start_replicas CASE STORE N: N replicas (store "memory" or "redis"), waits until each
# answers OPTIONS.
start_replicas() {
	local case=$1 store=$2 n=$3 i j ip args dir deadline
	REPLICA_SIDS=()
	for ((i = 1; i <= n; i++)); do
		ip=127.0.0.$i
		if port_answers "$ip" "$PORT"; then
			echo "$case: something already answers SIP on $ip:$PORT; stop it or set PORT" >&2
			return 1
		fi
		dir="$RUN/$case/r$i"
		mkdir -p "$dir"
		args=(--config "$RUN/config/registrar.yaml" --udp "$ip:$PORT" --tcp "$ip:$PORT"
			--http "127.0.0.1:$((HTTP_BASE + i))" --replica "r$i")
		# Builds from before the per-site digestAlgorithms took the global flag instead.
		if "$REGISTRAR_BIN" --help 2>/dev/null | grep -- '--digest-algorithms' >/dev/null; then
			args+=(--digest-algorithms MD5)
		fi
		if [[ "$store" == redis ]]; then
			args+=(--redis-url "redis://127.0.0.1:$REDIS_PORT" --redis-prefix "$REDIS_PREFIX")
			for ((j = 1; j <= n; j++)); do
				((j == i)) || args+=(--peer "r$j=127.0.0.$j:$PORT")
			done
		fi
		echo "RUST_LOG=$REGISTRAR_LOG $REGISTRAR_BIN ${args[*]} $REGISTRAR_ARGS" >"$dir/command"
		# shellcheck disable=SC2086 # REGISTRAR_ARGS is a list of words
		spawn "$dir/registrar.log" "$SERVER_MAX_SECS" env -u SWITCHBOARD_REDIS_URL RUST_LOG="$REGISTRAR_LOG" \
			"$REGISTRAR_BIN" "${args[@]}" $REGISTRAR_ARGS
		REPLICA_SIDS+=("$SPAWNED_PID")
	done
	for ((i = 1; i <= n; i++)); do
		deadline=$((SECONDS + READY_TIMEOUT))
		until port_answers "127.0.0.$i" "$PORT"; do
			if ! kill -0 "${REPLICA_SIDS[i - 1]}" 2>/dev/null || ((SECONDS >= deadline)); then
				echo "$case: replica r$i did not answer OPTIONS on 127.0.0.$i:$PORT; last lines of its log:" >&2
				tail -n 20 "$RUN/$case/r$i/registrar.log" >&2
				return 1
			fi
			sleep 0.2
		done
	done
}

stop_replicas() {
	local sid
	for sid in "${REPLICA_SIDS[@]}"; do stop_pgid "$sid"; done
	REPLICA_SIDS=()
}

# ---------------------------------------------------------------- one rate
# run_rate CASE N RATE: N sipps at once, sipp i against replica i with slice i at RATE/N; prints
# "rate achieved ok failed fail_pct secs retrans reg% redis% sipp% other% reg_us redis_us cmds_per_reg"
run_rate() {
	local case=$1 n=$2 rate=$3 i per calls dir pids=() m0 m1 r0 r1 d0 d1 c0 c1 t0 t1 wall
	per=$(((rate + n - 1) / n))
	calls=$((per * DURATION))
	for ((i = 1; i <= n; i++)); do
		dir="$RUN/$case/sipp-$rate-$i"
		mkdir -p "$dir"
	done
	m0=$(machine_ticks); r0=$(session_ticks "${REPLICA_SIDS[@]}")
	d0=0; [[ -n "$REDIS_SID" ]] && d0=$(session_ticks "$REDIS_SID")
	c0=NA; [[ "$case" == redis-* ]] && c0=$(redis_commands)
	t0=$EPOCHREALTIME
	for ((i = 1; i <= n; i++)); do
		dir="$RUN/$case/sipp-$rate-$i"
		sipp_register "$dir" "127.0.0.$i:$PORT" "$RUN/users/slice-$n-$i.csv" 127.0.0.1 "$((SIPP_PORT_BASE + i))" \
			"$per" "$calls" &
		pids+=($!)
	done
	for i in "${pids[@]}"; do wait "$i"; done
	t1=$EPOCHREALTIME; m1=$(machine_ticks); r1=$(session_ticks "${REPLICA_SIDS[@]}")
	d1=0; [[ -n "$REDIS_SID" ]] && d1=$(session_ticks "$REDIS_SID")
	c1=NA; [[ "$case" == redis-* ]] && c1=$(redis_commands)
	# memory-1 runs while redis-server idles: its CPU is not part of that case.
	[[ "$case" == memory-* ]] && { d0=0; d1=0; }
	echo "$m0|$m1|$r0|$r1|$d0|$d1|$c0|$c1|$t0|$t1" >"$RUN/$case/cpu-$rate.raw"
	# Per sipp: the last line of its stat file holds the final cumulative counters.
	local sums
	sums=$(for ((i = 1; i <= n; i++)); do
		dir="$RUN/$case/sipp-$rate-$i"
		awk -v s="$(sipp_final_stats "$dir/stat.csv" "$calls")" -v calls="$calls" -v cpu="$(sipp_rusage "$dir")" 'BEGIN {
			if (cpu == "NA") cpu = 0
			if (s == "") { printf "0 0 %d 0 0 %s\n", calls, cpu; exit }
			split(s, v, " "); ok = v[1]; ko = v[2]; el = v[3]
			printf "%.3f %d %d %.3f %d %s\n", (el > 0 ? ok / el : 0), ok, ko, el, v[4], cpu
		}'
	done | awk '{ ach += $1; ok += $2; ko += $3; if ($4 > el) el = $4; rtx += $5; cpu += $6 }
		END { printf "%.0f %d %d %.2f %d %.3f\n", ach, ok, ko, el, rtx, cpu }')
	wall=$(awk -v t0="$t0" -v t1="$t1" 'BEGIN { w = t1 - t0; print (w > 0) ? w : 1 }')
	awk -v rate="$rate" -v s="$sums" -v busy="$(machine_busy "$m0" "$m1" "$wall")" -v r0="$r0" -v r1="$r1" \
		-v d0="$d0" -v d1="$d1" -v c0="$c0" -v c1="$c1" -v wall="$wall" -v hz="$HZ" -v store="${case%%-*}" '
		BEGIN {
			split(s, v, " "); ach = v[1]; ok = v[2]; ko = v[3]; el = v[4]; rtx = v[5]; sippc = v[6]
			reg = (r1 - r0) / hz; red = (d1 - d0) / hz
			other = busy - reg - red - sippc; if (other < 0) other = 0
			tot = ok + ko
			printf "%d %d %d %d %.2f %.2f %d %.0f %s %.0f %.0f ", rate, ach, ok, ko, (tot ? 100 * ko / tot : 100), el, rtx,
				100 * reg / wall, (store == "redis" ? sprintf("%.0f", 100 * red / wall) : "-"), 100 * sippc / wall, 100 * other / wall
			if (ok > 0) printf "%.1f ", reg * 1e6 / ok; else printf "NA "
			if (store != "redis") printf "- -\n"
			else if (ok > 0) printf "%.1f %s\n", red * 1e6 / ok, (c0 ~ /^[0-9]+$/ && c1 ~ /^[0-9]+$/) ? sprintf("%.1f", (c1 - c0) / ok) : "NA"
			else printf "NA NA\n"
		}'
}

# Per case, over the rounds: the best rate, and the sustained runs' figures (space-separated).
declare -A BEST REGS REDS CMDSS PROBE REGUS REDUS CMDS
# Per Redis case: its reg_us ratio to memory-1's, one per round.
declare -A PAIRS
# Per case, this round's median reg_us.
declare -A ROUND_REGUS
STATUS=0
BUSY_RUNS=0
FMT='%-9s %7s %10s %8s %7s %6s %6s %7s %5s %6s %5s %6s %7s %8s %8s\n'

# probe_commands CASE N: PROBE_RATE registrations/s for PROBE_SECS through replica 1 (its
# slice of the users, registered by the rates before: refreshes) while redis_monitor.py counts
# what Redis executes, then as long idle; prints "cmds/reg round_trips/reg breakdown", the
# breakdown being origin:COMMAND=per-registration (client commands are round trips).
probe_commands() {
	local case=$1 n=$2 dir="$RUN/$1/probe" calls mon stats
	mkdir -p "$dir"
	calls=$((PROBE_RATE * PROBE_SECS))
	python3 "$HERE/redis_monitor.py" "$REDIS_PORT" "$((PROBE_SECS + 2))" "$dir/monitor-load.txt" &
	mon=$!
	sleep 0.5
	sipp_register "$dir" "127.0.0.1:$PORT" "$RUN/users/slice-$n-1.csv" 127.0.0.1 "$((SIPP_PORT_BASE + 1))" \
		"$PROBE_RATE" "$calls"
	wait "$mon"
	python3 "$HERE/redis_monitor.py" "$REDIS_PORT" "$((PROBE_SECS + 2))" "$dir/monitor-idle.txt"
	stats=$(sipp_final_stats "$dir/stat.csv" "$calls")
	awk -v ok="${stats%% *}" '
		FNR == NR { idle[$1 ":" $2] = $3; next }
		{ n[$1 ":" $2] = $3 - idle[$1 ":" $2] }
		END {
			if (ok + 0 <= 0) { print "NA NA -"; exit }
			for (k in n) { per = n[k] / ok; if (per < 0.005) continue
				tot += per; if (k ~ /^client:/) rt += per
				b = b (b ? "," : "") sprintf("%s=%.2f", k, per) }
			printf "%.2f %.2f %s\n", tot, rt, b
		}' "$dir/monitor-idle.txt" "$dir/monitor-load.txt"
}

# bench_case CASE ROUND: starts the case's replicas (and flushes Redis), runs every rate, stops
# them; the probe runs in the last round only.
bench_case() {
	local case=$1 round=$2 store=${1%%-*} n=${1##*-} rate line
	local r ach ok ko pct el rtx rcpu dcpu pcpu ocpu regus redus cmds best=0 regs=()
	[[ "${BEST[$case]:-NA}" == NA ]] || best=${BEST[$case]}
	BEST[$case]=${BEST[$case]:-NA} PROBE[$case]=${PROBE[$case]:-"- - -"} ROUND_REGUS[$case]=NA
	echo >&2
	echo "# === $case: $n replica(s), $store store$( ((ROUNDS > 1)) && echo ", round $round of $ROUNDS")" >&2
	mkdir -p "$RUN/$case"
	if [[ "$store" == redis ]]; then
		[[ "$(redis_cmd FLUSHALL)" == +OK ]] || { echo "$case: FLUSHALL failed" >&2; STATUS=1; return 1; }
	fi
	split_users "$n"
	if ! start_replicas "$case" "$store" "$n"; then
		stop_replicas; STATUS=1; return 1
	fi
	for rate in $RATES; do
		line=$(run_rate "$case" "$n" "$rate")
		read -r r ach ok ko pct el rtx rcpu dcpu pcpu ocpu regus redus cmds <<<"$line"
		# shellcheck disable=SC2059
		printf "$FMT" "$case" "$r" "$ach" "$ok" "$ko" "$pct" "$el" "$rtx" "$rcpu" "$dcpu" "$pcpu" "$ocpu" "$regus" "$redus" "$cmds"
		echo "$case $round $line" >>"$RUN/results.txt"
		note_busy "$ocpu"
		if [[ "$store" == redis && "$cmds" =~ ^0(\.0)?$ ]]; then
			echo "  ^ no Redis commands during this run: the replicas did not use Redis (--redis-url ignored?)" >&2
			STATUS=1
		fi
		if below_max_fail "$pct"; then
			((ach > best)) && best=$ach
			[[ "$regus" =~ ^[0-9.]+$ ]] && regs+=("$regus") && REGS[$case]+=" $regus"
			[[ "$redus" =~ ^[0-9.]+$ ]] && REDS[$case]+=" $redus"
			[[ "$cmds" =~ ^[0-9.]+$ ]] && CMDSS[$case]+=" $cmds"
		fi
		local sid died=0
		for sid in "${REPLICA_SIDS[@]}"; do kill -0 "$sid" 2>/dev/null || died=1; done
		if [[ "$store" == redis ]] && ! kill -0 "$REDIS_SID" 2>/dev/null; then died=1; fi
		if ((died)); then
			echo "$case: a replica or redis-server died during the run at rate $rate" >&2
			STATUS=1; break
		fi
		sleep 1 # let queues drain between rates
	done
	BEST[$case]=$best
	ROUND_REGUS[$case]=$(median "${regs[@]}")
	if [[ "$store" == redis ]] && ((PROBE_SECS > 0 && round == ROUNDS)); then
		PROBE[$case]=$(probe_commands "$case" "$n")
		echo "# $case under MONITOR, per registration (cmds rtt breakdown): ${PROBE[$case]}" >&2
	fi
	stop_replicas
}

ratio() { # ratio A B: A/B with two decimals, NA when either is missing or B is 0
	awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else printf "NA" }'
}

echo "# cases: ${CASES[*]}; rates: $RATES; ${DURATION}s of calls each; $USERS users; $NCPU CPUs" >&2
echo "# load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
others=$(pgrep -x sipp; pgrep -x kamailio; pgrep -x redis-server)
if [[ -n "$others" ]]; then
	echo "# note: other sipp/kamailio/redis-server processes are running (pids: $(echo $others)); they may skew the figures" >&2
fi
if [[ " ${CASES[*]} " == *" redis-"* ]]; then
	start_redis || exit 1
fi
# shellcheck disable=SC2059
printf "$FMT" case target achieved/s ok failed fail% secs retrans reg% redis% sipp% other% reg_us redis_us cmds/reg
for round in $(seq 1 "$ROUNDS"); do
	for c in "${CASES[@]}"; do bench_case "$c" "$round"; done
	for c in "${CASES[@]}"; do
		[[ "$c" == redis-* && -n "${ROUND_REGUS[memory-1]:-}" ]] || continue
		pair=$(ratio "${ROUND_REGUS[$c]}" "${ROUND_REGUS[memory-1]}")
		[[ "$pair" == NA ]] || PAIRS[$c]+=" $pair"
	done
done
for c in "${CASES[@]}"; do
	# shellcheck disable=SC2086 # the lists are words
	REGUS[$c]=$(median ${REGS[$c]:-}) REDUS[$c]=$(median ${REDS[$c]:-}) CMDS[$c]=$(median ${CMDSS[$c]:-})
done

# ---------------------------------------------------------------- summary
{
	echo
	echo "== best sustained REGISTER rate (digest, < ${MAX_FAIL_PCT}% failures, sum over the replicas' sipps), $NCPU CPUs,"
	echo "== sipp, every replica and redis-server on this machine; CPU per registration: median over those runs$( ((ROUNDS > 1)) && echo " of $ROUNDS rounds")"
	printf '%-9s %10s %8s %9s %9s %6s %6s   %s\n' case best/s reg_us redis_us cmds/reg m_cmds m_rtt ratios
	for c in "${CASES[@]}"; do
		r=""
		read -r pc pr pb <<<"${PROBE[$c]}"
		if [[ "$c" == redis-* ]]; then
			[[ -n "${BEST[memory-1]:-}" ]] && r+="rate to memory-1: $(ratio "${BEST[$c]}" "${BEST[memory-1]}"), reg_us to memory-1: $(ratio "${REGUS[$c]}" "${REGUS[memory-1]}")"
			if [[ "$c" != redis-1 && -n "${BEST[redis-1]:-}" ]]; then
				r+="${r:+, }rate to redis-1: $(ratio "${BEST[$c]}" "${BEST[redis-1]}")"
			fi
		fi
		printf '%-9s %10s %8s %9s %9s %6s %6s   %s\n' "$c" "${BEST[$c]}" "${REGUS[$c]}" "${REDUS[$c]}" "${CMDS[$c]}" "$pc" "$pr" "$r"
	done
	if ((ROUNDS > 1)); then
		for c in "${CASES[@]}"; do
			# shellcheck disable=SC2086 # the list is words
			[[ -n "${PAIRS[$c]:-}" ]] &&
				echo "$c reg_us to memory-1, round by round:${PAIRS[$c]} (median $(median ${PAIRS[$c]}))"
		done
	fi
	for c in "${CASES[@]}"; do
		read -r pc pr pb <<<"${PROBE[$c]}"
		[[ "$pb" == - ]] || echo "$c under MONITOR, per registration: $pb"
	done
	busy_warning
} | tee "$RUN/summary.txt"
exit "$STATUS"
