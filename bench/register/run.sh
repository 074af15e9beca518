#!/usr/bin/env bash
# REGISTER benchmark: Kamailio 5.6 vs. Switchboard's registrar (or any SIP registrar), side by side.
#
# Every "call" is one registration with digest auth, driven by sipp (register_auth.xml):
#   REGISTER -> 401 (challenge) -> REGISTER with Authorization -> 200.
# It starts every server (each on its own port) and warms it up (WARMUP), then runs sipp at each
# target rate in RATES for DURATION seconds' worth of calls (-m RATE*DURATION), server after
# server, ROUNDS times over: rate by rate, the servers' runs alternate, so a disturbance of the
# machine lands on every server alike. It reads sipp's final statistics and prints, per run:
# target rate, round, achieved successful registrations/s, failures and failure %. The "best" rate of a server is
# the highest achieved rate among the runs with fewer than MAX_FAIL_PCT % failures. At the end
# it prints every server's best rate and the ratio of each to Kamailio's, and the server CPU time
# per successful registration (a figure that, unlike the rate, hardly moves when other programs
# share the machine), the median over the rounds at each rate.
#
# By default it builds (cargo build --release -p switchboard-registrar) and runs our registrar
# after Kamailio, on a config generated from the same users (registrar_config.py).
#
# Output columns per run: server, target (calls/s asked of sipp), round, achieved/s (successful
# registrations / elapsed seconds), ok, failed (failed + never completed), fail%, secs (sipp's
# elapsed time), retrans (sipp UDP retransmissions: a sign of overload / dropped datagrams),
# srv% / sipp% / other% (CPU, % of one core, averaged over the run; other% = the rest of the
# machine: kernel work for loopback UDP plus any unrelated program -- high other% means the run
# was disturbed), us/reg (server CPU time, user + system of all its processes and threads from
# /proc/PID/stat, divided by the successful registrations: microseconds per registration), sys%
# (the share of that CPU time spent in the kernel: system time, mostly the socket calls).
# Raw data: results.txt and per-run sipp files in the run directory (KEEP=1).
#
# Usage:
#   bench/register/run.sh                        # Kamailio, then Switchboard, and the ratio
#   RATES="10000 20000 30000" DURATION=10 USERS=10000 bench/register/run.sh
#   WARMUP=70 ROUNDS=3 RATES=20000 bench/register/run.sh   # at steady size, median of 3 rounds
#   SKIP_KAMAILIO=1 BUILD=0 bench/register/run.sh  # only ours, binary already built
#   SKIP_KAMAILIO=1 BASE_BIN=/tmp/before/switchboard-registrar ROUNDS=5 bench/register/run.sh
#                                                # this build against an earlier one
#   REGISTRAR_CMD='my-registrar --udp $BENCH_IP:$BENCH_PORT --users $BENCH_USERS_TSV' \
#       bench/register/run.sh                    # some other registrar instead of ours
#
# Environment (all optional):
#   USERS=10000          number of users, user00000.. (users.py, deterministic passwords)
#   RATES="5000 10000 15000 20000"   target rates (registrations/s), each run once per round, in order
#   DURATION=10          seconds' worth of calls per rate (sipp -m RATE*DURATION)
#   WARMUP=0             seconds' worth of calls at the first rate before the measured runs, not
#                        counted: our registrar's memory grows under load until its transaction
#                        cache (two generations of at most 100 000 answers, each kept 32-64 s, less
#                        when full) and the allocator's pages reach their steady size: at 20 000/s
#                        its RSS went from 112 MB at 5 s to 200 MB at 18 s and 208 MB at 25 s, and
#                        the kernel's page zeroing still showed in a profile at 50 s, no longer at
#                        80 s. WARMUP=70 measures every server at its steady size.
#   ROUNDS=1             measured runs per rate and server (1..20), alternating between servers;
#                        the per-rate figures are the medians over the rounds
#   MAX_FAIL_PCT=1       a run counts as sustained if failures < this percentage
#   IP=127.0.0.1         loopback address every server listens on and sipp sends from
#   KAM_PORT=25060       Kamailio's UDP port
#   KAM_MEM=tlsf         Kamailio's memory manager (-x): tlsf, as production runs it; qm is its
#                        debugging-friendly default and costs it about twice the CPU per registration
#   OUR_PORT=25070       UDP port given to REGISTRAR_CMD
#   SIPP_PORT=25100      sipp's local UDP port
#   SKIP_KAMAILIO=0      1: do not benchmark Kamailio
#   SKIP_SWITCHBOARD=0   1: do not benchmark our registrar
#   BUILD=1              0: do not run `cargo build --release -p switchboard-registrar` first
#   REGISTRAR_BIN=<target dir>/release/switchboard-registrar   our registrar's binary
#   REGISTRAR_ARGS=      extra arguments for it (e.g. "--udp-workers 1")
#   BASE_BIN=            an earlier build of our registrar, measured too (as "base", on BASE_PORT=25080
#                        and its /metrics on BASE_PORT+1), its runs alternating with the others':
#                        before and after a change in one run (SKIP_KAMAILIO=1: ratios to base)
#   REGISTRAR_LOG=info   its RUST_LOG
#   DIGEST_ALGORITHMS=MD5  the site's digestAlgorithms in the generated config (sipp 3.6 answers
#                        only MD5 challenges)
#   OUR_HTTP_PORT=25071  its /metrics port (loopback)
#   REGISTRAR_CMD=       instead of our registrar: command line (run with bash -c, in its own process group) that starts our
#                        registrar in the foreground, listening on UDP $BENCH_IP:$BENCH_PORT, with the
#                        users of $BENCH_USERS_TSV in realm $BENCH_REALM. Single-quote it so the
#                        variables expand in the child. Exported to it:
#                          BENCH_IP, BENCH_PORT, BENCH_REALM (bench.test),
#                          BENCH_USERS_TSV (user<TAB>password<TAB>ha1_md5<TAB>ha1_sha256, no header),
#                          BENCH_DIR (a scratch directory of its own in the run's temp dir).
#                        It must answer a SIP OPTIONS (any final response) once it is ready.
#   REGISTRAR_NAME=switchboard   label for REGISTRAR_CMD in the output
#   TARGETS=             extra servers that are already running: "name=IP:PORT ...". They must
#                        hold the same users: generate them with
#                          bench/register/users.py --out DIR --count $USERS   (same default seed)
#   READY_TIMEOUT=20     seconds a server gets to answer OPTIONS after it is started
#   BUSY_OTHER_PCT=40    flag a run when CPU not used by the server or sipp exceeds this (% of one
#                        core; loopback UDP softirq work alone takes ~10-30%)
#   KEEP=0               1: keep the temp dir (logs, sipp stats, configs) and print its path
#   WORKDIR=             use this directory instead of a new temp dir (implies KEEP=1)
#
# Exit status: 0 if every server started and was measured; 1 if a server did not start (or died
# during the run); 2 on a usage error / missing tool.
#
# To add another server started by this script, write start_<name> (see start_kamailio and
# start_cmd) and call:   start_server NAME HOST PORT [start_function args...]
#
# Every process this script starts runs in its own process group, under `timeout`, and is
# killed (TERM, then KILL) on exit by the trap. sipp runs are bounded by -m, -recv_timeout and
# an outer `timeout`. The process handling, CPU readers and sipp helpers shared with
# bench/proxy and bench/scale are in bench/lib.sh.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
# shellcheck source=kamailio.sh
. "$HERE/kamailio.sh"

USERS=${USERS:-10000}
RATES=${RATES:-"5000 10000 15000 20000"}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-0}
ROUNDS=${ROUNDS:-1}
MAX_FAIL_PCT=${MAX_FAIL_PCT:-1}
IP=${IP:-127.0.0.1}
KAM_PORT=${KAM_PORT:-25060}
KAM_MEM=${KAM_MEM:-tlsf}
OUR_PORT=${OUR_PORT:-25070}
SIPP_PORT=${SIPP_PORT:-25100}
SKIP_KAMAILIO=${SKIP_KAMAILIO:-0}
SKIP_SWITCHBOARD=${SKIP_SWITCHBOARD:-0}
BUILD=${BUILD:-1}
REPO=$(cd "$HERE/../.." && pwd)
REGISTRAR_BIN=${REGISTRAR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/switchboard-registrar}
REGISTRAR_ARGS=${REGISTRAR_ARGS:-}
BASE_BIN=${BASE_BIN:-}
BASE_PORT=${BASE_PORT:-25080}
REGISTRAR_LOG=${REGISTRAR_LOG:-info}
DIGEST_ALGORITHMS=${DIGEST_ALGORITHMS:-MD5}
OUR_HTTP_PORT=${OUR_HTTP_PORT:-25071}
REGISTRAR_CMD=${REGISTRAR_CMD:-}
REGISTRAR_NAME=${REGISTRAR_NAME:-switchboard}
TARGETS=${TARGETS:-}
READY_TIMEOUT=${READY_TIMEOUT:-20}
BUSY_OTHER_PCT=${BUSY_OTHER_PCT:-40}
KEEP=${KEEP:-0}
REALM=bench.test

case "$KAM_MEM" in tlsf | qm | fm) ;; *) die "KAM_MEM must be tlsf, qm or fm, got $KAM_MEM" ;; esac
case "$IP" in 127.*) ;; *) die "IP must be a loopback address (127.x.y.z), got $IP" ;; esac
[[ "$USERS" =~ ^[0-9]+$ && "$USERS" -ge 1 ]] || die "USERS must be a positive integer"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "WARMUP must be a whole number of seconds"
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 && "$ROUNDS" -le 20 ]] || die "ROUNDS must be 1..20"
check_duration_rates
require_tools sipp sipsak python3 timeout setsid awk /usr/bin/time
if [[ "$SKIP_KAMAILIO" != 1 ]]; then require_tools kamailio; fi
if [[ -z "$REGISTRAR_CMD" && "$SKIP_SWITCHBOARD" != 1 ]]; then build_registrar "$REPO"; fi

NRATES=$(wc -w <<<"$RATES")
# Upper bound for one sipp run: the calls themselves, plus calls that wait for retransmissions
# (-recv_timeout 5 s) and a margin.
SIPP_MAX_SECS=$((DURATION * 3 + 20))
# Upper bound for a server's lifetime: every server runs from its start to the end, through
# every server's start-up, warm-up and runs.
NSERVERS=$(( (SKIP_KAMAILIO != 1) + (SKIP_SWITCHBOARD != 1 || ${#REGISTRAR_CMD} > 0) + (${#BASE_BIN} > 0) + $(wc -w <<<"$TARGETS") ))
SERVER_MAX_SECS=$((NSERVERS * (READY_TIMEOUT + WARMUP * 3 + 25 + ROUNDS * NRATES * (SIPP_MAX_SECS + 5)) + 30))

make_run_dir register
bench_traps

# wait_ready NAME HOST PORT PID: until the server answers OPTIONS (any final response), the
# process dies, or READY_TIMEOUT passes.
wait_ready() {
	local name=$1 host=$2 port=$3 pid=$4 deadline
	deadline=$((SECONDS + READY_TIMEOUT))
	while ((SECONDS < deadline)); do
		if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
			echo "$name: process exited before answering" >&2
			return 1
		fi
		port_answers "$host" "$port" && return 0
		sleep 0.2
	done
	echo "$name: no answer to OPTIONS on $host:$port within ${READY_TIMEOUT}s" >&2
	return 1
}

# ---------------------------------------------------------------- users
echo "# generating $USERS users in $RUN/users" >&2
python3 "$HERE/users.py" --out "$RUN/users" --count "$USERS" --realm "$REALM" || die "users.py failed"

# ---------------------------------------------------------------- servers
# start_kamailio PORT: Kamailio from kamailio.cfg.tmpl (kamailio.sh); sets SERVER_PID, SERVER_LOG.
start_kamailio() {
	local port=$1 dir="$RUN/kamailio"
	kamailio_config "$dir" "$IP" "$port" "$RUN/users" || return 1
	kamailio_args "$dir" "$KAM_MEM"
	SERVER_LOG="$dir/kamailio.log"
	spawn "$SERVER_LOG" "$SERVER_MAX_SECS" "${KAMAILIO_ARGS[@]}"
	SERVER_PID=$SPAWNED_PID
}

# start_cmd PORT: our registrar from REGISTRAR_CMD; sets SERVER_PID, SERVER_LOG.
start_cmd() {
	local port=$1 dir="$RUN/$REGISTRAR_NAME"
	mkdir -p "$dir" || return 1
	SERVER_LOG="$dir/server.log"
	spawn "$SERVER_LOG" "$SERVER_MAX_SECS" env BENCH_IP="$IP" BENCH_PORT="$port" BENCH_REALM="$REALM" \
		BENCH_USERS_TSV="$RUN/users/users.tsv" BENCH_DIR="$dir" bash -c "$REGISTRAR_CMD"
	SERVER_PID=$SPAWNED_PID
}

# start_switchboard NAME BIN PORT HTTP_PORT: our registrar (the build BIN) on a config generated
# from users.tsv; sets SERVER_PID, SERVER_LOG.
start_switchboard() {
	local name=$1 bin=$2 port=$3 http_port=$4 dir="$RUN/$1" extra=()
	# The config in a directory of its own: the registrar watches the config's directory, and a
	# log file written next to it would make it re-read the file.
	mkdir -p "$dir/config" || return 1
	python3 "$HERE/registrar_config.py" --users "$RUN/users/users.tsv" --out "$dir/config/registrar.yaml" \
		--realm "$REALM" --algorithms "$DIGEST_ALGORITHMS" || return 1
	# Builds from before the per-site digestAlgorithms took the global flag instead.
	# grep without -q reads the whole help: with pipefail, a large binary cut off by SIGPIPE
	# would fail the check.
	if "$bin" --help 2>/dev/null | grep -- '--digest-algorithms' >/dev/null; then
		extra+=(--digest-algorithms "$DIGEST_ALGORITHMS")
	fi
	SERVER_LOG="$dir/registrar.log"
	# shellcheck disable=SC2086 # REGISTRAR_ARGS is a list of words
	spawn "$SERVER_LOG" "$SERVER_MAX_SECS" env RUST_LOG="$REGISTRAR_LOG" "$bin" --config "$dir/config/registrar.yaml" \
		--udp "$IP:$port" --tcp "$IP:$port" --http "$IP:$http_port" --replica bench \
		"${extra[@]}" $REGISTRAR_ARGS
	SERVER_PID=$SPAWNED_PID
}

# ---------------------------------------------------------------- sipp
# sipp_run NAME HOST PORT RATE [SUFFIX]: one bounded sipp run (files in NAME/sipp-RATE-SUFFIX); prints
# "rate achieved ok failed fail_pct elapsed retrans server_cpu% sipp_cpu% other_cpu% us_per_reg sys%"
# (CPU figures in % of one core, averaged over the run, approximate; "other" is the rest of the
# machine: kernel softirq work for loopback UDP, and any other program running at the same time;
# sys%: the kernel's share of the server's CPU time).
sipp_run() {
	local name=$1 host=$2 port=$3 rate=$4 calls dir
	calls=$((rate * DURATION))
	dir="$RUN/$name/sipp-$rate${5:-}"
	mkdir -p "$dir"
	local m0 s0 m1 s1 t0 t1 rc wall us0 us1
	m0=$(machine_ticks); us0=$(session_user_sys "$SERVER_PID"); t0=$EPOCHREALTIME
	sipp_register "$dir" "$host:$port" "$RUN/users/users.csv" "$IP" "$SIPP_PORT" "$rate" "$calls"
	rc=$?
	t1=$EPOCHREALTIME; m1=$(machine_ticks); us1=$(session_user_sys "$SERVER_PID")
	s0=$(ticks_total "$us0") s1=$(ticks_total "$us1")
	echo "$rc" >"$dir/rc"
	wall=$(elapsed "$t0" "$t1")
	local cpu
	cpu=$(awk -v busy="$(machine_busy "$m0" "$m1" "$wall")" -v s0="$s0" -v s1="$s1" -v hz="$(getconf CLK_TCK)" \
		-v wall="$wall" -v sippc="$(sipp_rusage "$dir")" '
		BEGIN {
			if (sippc == "NA") sippc = -1
			srv = (s0 == "NA" || s1 == "NA") ? -1 : (s1 - s0) / hz
			printf "%s %s ", (srv < 0 ? "NA" : sprintf("%.0f", 100 * srv / wall)), (sippc < 0 ? "NA" : sprintf("%.0f", 100 * sippc / wall))
			other = busy - (srv > 0 ? srv : 0) - (sippc > 0 ? sippc : 0); if (other < 0) other = 0
			printf "%.0f\n", 100 * other / wall
		}')
	echo "$m0|$m1|$s0|$s1|$t0|$t1" >"$dir/cpu.raw"
	# rate achieved ok failed fail_pct secs retrans; secs: sipp's elapsed time (the wall time of
	# the run if sipp's is unknown); no statistics: NA (secs: the wall time if the file exists).
	local res stats
	if stats=$(sipp_final_stats "$dir/stat.csv" "$calls"); then
		res=$(awk -v rate="$rate" -v s="$stats" -v wall="$wall" 'BEGIN {
			split(s, v, " "); ok = v[1]; ko = v[2]; el = v[3]; if (el <= 0) el = wall
			tot = ok + ko
			printf "%d %.0f %d %d %.2f %.2f %d\n", rate, ok / el, ok, ko, (tot ? 100 * ko / tot : 100), el, v[4]
		}')
	elif [[ -f "$dir/stat.csv" ]]; then
		res=$(awk -v rate="$rate" -v wall="$wall" 'BEGIN { printf "%d NA NA NA NA %.2f NA\n", rate, wall }')
	else
		res="$rate NA NA NA NA NA NA"
	fi
	# Server CPU time per successful registration, in microseconds.
	local usreg
	usreg=$(awk -v s0="$s0" -v s1="$s1" -v hz="$(getconf CLK_TCK)" -v ok="$(cut -d' ' -f3 <<<"$res")" '
		BEGIN {
			if (s0 == "NA" || s1 == "NA" || ok !~ /^[0-9]+$/ || ok == 0) print "NA"
			else printf "%.1f\n", (s1 - s0) / hz * 1e6 / ok
		}')
	echo "$res $cpu $usreg $(sys_share "$us0" "$us1")"
}

declare -A BEST USREG
# PID/LOG/HOST/PORT[NAME]: a started server; USREG_RUNS[NAME@RATE]: its CPU per registration in
# each round at target RATE (sustained or not); USREG_AT[NAME@RATE]: their median; SUSTAINED[NAME]:
# its CPU per registration in the sustained runs; DEAD[NAME]: set once it died.
declare -A PID LOG HOST PORT USREG_RUNS USREG_AT SUSTAINED DEAD
SERVER_ORDER=()
BUSY_RUNS=0
STATUS=0

# start_server NAME HOST PORT [START_FUNCTION ARGS...]
#   Starts the server with START_FUNCTION (if given), waits until it answers and warms it up
#   (WARMUP); it then runs until the end, idle while the others are measured.
start_server() {
	local name=$1 host=$2 port=$3; shift 3
	SERVER_PID="" SERVER_LOG=""
	echo >&2
	echo "# === $name ($host:$port)" >&2
	mkdir -p "$RUN/$name"
	if (($# > 0)); then
		# Something already answering on the port would take part of the load (UDP sockets
		# with SO_REUSEADDR can share a port) and hold other users: refuse.
		if port_answers "$host" "$port"; then
			echo "$name: something already answers SIP on $host:$port; stop it or pick another port" >&2
			STATUS=1; return 1
		fi
		if ! "$@"; then
			echo "$name: failed to start" >&2
			STATUS=1; return 1
		fi
	fi
	if ! wait_ready "$name" "$host" "$port" "$SERVER_PID"; then
		[[ -n "$SERVER_LOG" && -f "$SERVER_LOG" ]] && { echo "--- last lines of $SERVER_LOG:" >&2; tail -n 20 "$SERVER_LOG" >&2; }
		[[ -n "$SERVER_PID" ]] && stop_pgid "$SERVER_PID"
		STATUS=1; return 1
	fi
	echo "$name: answering on $host:$port" >&2
	SERVER_ORDER+=("$name")
	PID[$name]=$SERVER_PID LOG[$name]=$SERVER_LOG HOST[$name]=$host PORT[$name]=$port
	BEST[$name]=0 USREG[$name]=NA
	if ((WARMUP > 0)); then
		echo "$name: warming up, ${WARMUP}s of calls at ${RATES%% *}/s (not counted)" >&2
		DURATION=$WARMUP SIPP_MAX_SECS=$((WARMUP * 3 + 20)) \
			sipp_run "$name/warmup" "$host" "$port" "${RATES%% *}" >/dev/null
		sleep 1
	fi
}

# measure NAME RATE ROUND: one measured run of a started server; prints its row, records its
# figures; false if the server died.
measure() {
	local name=$1 rate=$2 round=$3 line r ach ok ko pct el rtx scpu pcpu ocpu usreg sysp
	SERVER_PID=${PID[$name]}
	line=$(sipp_run "$name" "${HOST[$name]}" "${PORT[$name]}" "$rate" "-r$round")
	read -r r ach ok ko pct el rtx scpu pcpu ocpu usreg sysp <<<"$line"
	printf '%-12s %7s %5s %10s %8s %7s %6s %6s %8s %5s %5s %5s %7s %5s\n' \
		"$name" "$r" "$round" "$ach" "$ok" "$ko" "$pct" "$el" "$rtx" "$scpu" "$pcpu" "$ocpu" "$usreg" "$sysp"
	echo "$name $round $line" >>"$RUN/results.txt"
	USREG_RUNS[$name@$rate]+=" $usreg"
	note_busy "$ocpu"
	if [[ "$ach" != NA ]] && below_max_fail "$pct"; then
		((ach > BEST[$name])) && BEST[$name]=$ach
		[[ "$usreg" != NA ]] && SUSTAINED[$name]+=" $usreg"
	fi
	if [[ -n "$SERVER_PID" ]] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
		echo "$name: server died during the run at rate $rate" >&2
		[[ -n "${LOG[$name]}" ]] && tail -n 20 "${LOG[$name]}" >&2
		return 1
	fi
}

echo "# Kamailio memory manager: -x $KAM_MEM" >&2
echo "# rates: $RATES; ${DURATION}s of calls each; $ROUNDS round(s); $USERS users; sipp from $IP:$SIPP_PORT; $(nproc) CPUs" >&2
echo "# load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
if others=$(pgrep -x 'sipp|kamailio'); then
	echo "# WARNING: other sipp/kamailio processes are running on this machine (pids: $(echo $others));" \
		"they compete for the CPUs and skew the figures" >&2
fi

if [[ "$SKIP_KAMAILIO" != 1 ]]; then
	start_server kamailio "$IP" "$KAM_PORT" start_kamailio "$KAM_PORT"
fi
if [[ -n "$REGISTRAR_CMD" ]]; then
	start_server "$REGISTRAR_NAME" "$IP" "$OUR_PORT" start_cmd "$OUR_PORT"
elif [[ "$SKIP_SWITCHBOARD" != 1 ]]; then
	if [[ -n "$BASE_BIN" ]]; then
		start_server base "$IP" "$BASE_PORT" start_switchboard base "$BASE_BIN" "$BASE_PORT" "$((BASE_PORT + 1))"
	fi
	start_server switchboard "$IP" "$OUR_PORT" start_switchboard switchboard "$REGISTRAR_BIN" "$OUR_PORT" "$OUR_HTTP_PORT"
fi
for t in $TARGETS; do
	tname=${t%%=*} taddr=${t#*=}
	[[ "$tname" != "$t" && "$taddr" == *:* ]] || die "TARGETS entry must be name=IP:PORT, got '$t'"
	case "$taddr" in 127.*) ;; *) die "TARGETS must be loopback addresses, got '$taddr'" ;; esac
	start_server "$tname" "${taddr%:*}" "${taddr##*:}"
done

# ---------------------------------------------------------------- measured runs
# Round by round, rate by rate, server after server: a disturbance of the machine (another
# program, the host) lands on neighbouring runs of every server alike.
printf '%-12s %7s %5s %10s %8s %7s %6s %6s %8s %5s %5s %5s %7s %5s\n' \
	server target round achieved/s ok failed fail% secs retrans srv% sipp% other% us/reg sys%
for round in $(seq 1 "$ROUNDS"); do
	for rate in $RATES; do
		for name in "${SERVER_ORDER[@]}"; do
			[[ -n "${DEAD[$name]:-}" ]] && continue
			measure "$name" "$rate" "$round" || { DEAD[$name]=1; STATUS=1; }
			sleep 1 # let queues drain between runs
		done
	done
done
for name in "${SERVER_ORDER[@]}"; do
	[[ -n "${PID[$name]}" ]] && stop_pgid "${PID[$name]}"
	# shellcheck disable=SC2086 # lists of words
	USREG[$name]=$(median ${SUSTAINED[$name]:-})
	for rate in $RATES; do
		# shellcheck disable=SC2086
		USREG_AT[$name@$rate]=$(median ${USREG_RUNS[$name@$rate]:-})
	done
	echo "$name: best sustained rate (<${MAX_FAIL_PCT}% failures): ${BEST[$name]} registrations/s;" \
		"server CPU per registration (median of those runs): ${USREG[$name]} us" >&2
done

# ---------------------------------------------------------------- summary
echo
echo "== best sustained REGISTER rate (digest auth, <${MAX_FAIL_PCT}% failures), $(nproc) CPUs, sipp on the same machine;"
echo "== server CPU time per registration (median over those runs)"
# Ratios are to the first server started: Kamailio, else the base build, else the only one.
ref=${SERVER_ORDER[0]:-}
kbest=${BEST[$ref]:-NA} kus=${USREG[$ref]:-NA}
for name in "${SERVER_ORDER[@]}"; do
	b=${BEST[$name]} u=${USREG[$name]}
	line=$(printf '%-12s %8s /s  %7s us/reg' "$name" "$b" "$u")
	if [[ "$name" != "$ref" && "$kbest" != NA && "$kbest" -gt 0 && "$b" != NA ]]; then
		line+=$(printf '   rate ratio to %s: %s' "$ref" "$(awk -v a="$b" -v k="$kbest" 'BEGIN{printf "%.2f", a / k}')")
		if [[ "$kus" != NA && "$u" != NA ]]; then
			line+=$(printf ', CPU ratio: %s' "$(awk -v a="$u" -v k="$kus" 'BEGIN{printf "%.2f", a / k}')")
		fi
	fi
	echo "$line"
done
# CPU per registration at equal target rates: the comparison that holds on a busy machine.
if [[ "${#SERVER_ORDER[@]}" -gt 1 ]]; then
	echo
	[[ "$ref" == kamailio ]] && refnote=" (-x $KAM_MEM)" || refnote=""
	echo "== server CPU per registration (us, median over $ROUNDS round(s)) at each target rate, and the ratio to $ref$refnote"
	for rate in $(tr ' ' '\n' <<<"$RATES" | awk 'NF && !seen[$1]++'); do
		k=${USREG_AT[$ref@$rate]:-NA}
		line=$(printf '%7s  %s %7s' "$rate" "$ref" "$k")
		for name in "${SERVER_ORDER[@]}"; do
			[[ "$name" == "$ref" ]] && continue
			u=${USREG_AT[$name@$rate]:-NA}
			line+=$(printf '   %s %7s' "$name" "$u")
			if [[ "$k" != NA && "$u" != NA ]]; then
				line+=$(awk -v a="$u" -v k="$k" 'BEGIN { printf " (ratio %.2f)", a / k }')
			fi
		done
		echo "$line"
	done
fi
busy_warning
exit "$STATUS"
