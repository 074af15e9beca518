# shellcheck shell=bash
# Helpers shared by the benchmark scripts (bench/register, bench/proxy, bench/scale); sourced,
# never run:   . "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../lib.sh"
#
# Process handling: every process a script starts goes through spawn(), which runs it in a
# session (and process group) of its own under `timeout` and records its id in STARTED_PGIDS;
# bench_traps() installs the exit trap that stops every such group (TERM, then KILL after 5 s)
# and removes the run directory RUN unless KEEP=1.
#
# Globals read here, set by the script before it calls the functions that need them: RUN, KEEP
# (cleanup), SIPP_MAX_SECS (sipp_register), BUSY_OTHER_PCT and BUSY_RUNS (note_busy,
# busy_warning), IP (port_answers: the address sipsak sends from; 127.0.0.1 if unset).

# Directory holding this file (bench/).
BENCH_DIR_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Process group (== session) ids of everything spawn() started.
STARTED_PGIDS=()

# die MESSAGE: print "run.sh: MESSAGE" on stderr and exit 2 (usage error / missing tool).
die() { echo "run.sh: $*" >&2; exit 2; }

# require_tools TOOL...: die unless every TOOL is on PATH (or an executable path).
require_tools() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || die "missing tool: $tool"
	done
}

# check_duration_rates: die unless DURATION is 1..120 and every word of RATES is 1..200000.
check_duration_rates() {
	local r
	[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 && "$DURATION" -le 120 ]] || die "DURATION must be 1..120"
	for r in $RATES; do [[ "$r" =~ ^[0-9]+$ && "$r" -ge 1 && "$r" -le 200000 ]] || die "bad rate '$r' in RATES"; done
}

# build_registrar REPO: with BUILD=1, `cargo build --release -p switchboard-registrar` in REPO;
# then die unless REGISTRAR_BIN is executable.
build_registrar() {
	if [[ "${BUILD:-1}" == 1 ]]; then
		command -v cargo >/dev/null || die "missing tool: cargo (or set BUILD=0 and REGISTRAR_BIN)"
		echo "# building: cargo build --release -p switchboard-registrar" >&2
		(cd "$1" && cargo build --release -p switchboard-registrar) >&2 || die "cargo build failed"
	fi
	[[ -x "$REGISTRAR_BIN" ]] || die "no registrar binary at $REGISTRAR_BIN (BUILD=1 builds it)"
}

# make_run_dir NAME: sets RUN to WORKDIR (created; implies KEEP=1) or to a new
# /tmp/switchboard-bench-NAME.XXXXXX.
make_run_dir() {
	if [[ -n "${WORKDIR:-}" ]]; then
		mkdir -p "$WORKDIR" || die "cannot create $WORKDIR"
		RUN=$(cd "$WORKDIR" && pwd); KEEP=1
	else
		RUN=$(mktemp -d "/tmp/switchboard-bench-$1.XXXXXX") || die "mktemp failed"
	fi
}

# stop_pgid PGID: TERM the process group, wait up to 5 s for it to go, then KILL it.
stop_pgid() {
	local pg=$1 i
	kill -0 -- "-$pg" 2>/dev/null || return 0
	kill -TERM -- "-$pg" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 -- "-$pg" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL -- "-$pg" 2>/dev/null
	return 0
}

# cleanup: stop every process group spawn() started; remove RUN, or with KEEP=1 print its path.
cleanup() {
	local pg
	for pg in "${STARTED_PGIDS[@]}"; do stop_pgid "$pg"; done
	if [[ "$KEEP" == 1 ]]; then
		echo "run directory: $RUN" >&2
	else
		rm -rf -- "$RUN"
	fi
}

# bench_traps: cleanup on exit; INT and TERM exit (130, 143) through it.
bench_traps() {
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# spawn LOGFILE LIMIT CMD...: CMD in a session (and process group) of its own, output to
# LOGFILE, killed after LIMIT seconds (KILL 5 s after that); sets SPAWNED_PID (== its session
# and process group id) and adds it to STARTED_PGIDS.
spawn() {
	local log=$1 limit=$2; shift 2
	setsid timeout -k 5 "$limit" "$@" >"$log" 2>&1 </dev/null &
	SPAWNED_PID=$!
	STARTED_PGIDS+=("$SPAWNED_PID")
}

# port_answers HOST PORT: true if a SIP server answers OPTIONS there (any final response).
port_answers() {
	local rc
	timeout 2 sipsak -H "${IP:-127.0.0.1}" -s "sip:ping@$1:$2" >/dev/null 2>&1
	rc=$?
	# sipsak: 0 = 200 OK, 1 = another final response; both mean a SIP server answers.
	[[ $rc == 0 || $rc == 1 ]]
}

# machine_ticks: "total busy" jiffies of all CPUs, from /proc/stat.
machine_ticks() {
	awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, t - $5 - $6; exit }' /proc/stat
}

# machine_busy M0 M1 WALL: CPU seconds the whole machine used between two machine_ticks
# readings WALL seconds apart. Scaled by the elapsed ticks rather than by wall time: in a VM
# /proc/stat can miss ticks (seen: ~80% of the expected count in a Firecracker guest), which
# would hide other programs.
machine_busy() {
	awk -v m0="$1" -v m1="$2" -v wall="$3" -v ncpu="$(grep -c '^cpu[0-9]' /proc/stat)" 'BEGIN {
		split(m0, a, " "); split(m1, b, " "); dt = b[1] - a[1]
		printf "%.3f\n", (dt > 0) ? (b[2] - a[2]) / dt * ncpu * wall : 0 }'
}

# session_user_sys SID...: CPU jiffies used so far in user space and in the kernel ("USER SYS")
# by the live processes of the sessions (every process spawn() started leads one); empty SIDs
# are skipped, "NA" if none is left.
session_user_sys() {
	local sid p u=0 s=0 t any=0
	for sid in "$@"; do
		[[ -n "$sid" ]] || continue
		any=1
		for p in $(ps -s "$sid" -o pid= 2>/dev/null); do
			# after the ")" that ends the command name: utime is the 12th field, stime the 13th
			t=$(awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$p/stat" 2>/dev/null) || continue
			[[ -n "$t" ]] || continue
			u=$((u + ${t% *})) s=$((s + ${t#* }))
		done
	done
	if ((any)); then echo "$u $s"; else echo NA; fi
}

# session_ticks SID...: CPU jiffies (user+system) used so far by the live processes of the
# sessions, as session_user_sys counts them; "NA" if none is left.
session_ticks() {
	ticks_total "$(session_user_sys "$@")"
}

# ticks_total "USER SYS": their sum, or "NA" for NA.
ticks_total() {
	if [[ "$1" == NA ]]; then echo NA; else echo $((${1% *} + ${1#* })); fi
}

# sys_share "USER0 SYS0" "USER1 SYS1": the kernel's share (%, rounded) of the CPU time used
# between two session_user_sys readings; "NA" if either is NA or no time was used.
sys_share() {
	[[ "$1" != NA && "$2" != NA ]] || { echo NA; return; }
	awk -v u=$((${2% *} - ${1% *})) -v s=$((${2#* } - ${1#* })) \
		'BEGIN { if (u + s > 0) printf "%.0f\n", 100 * s / (u + s); else print "NA" }'
}

# elapsed T0 T1: T1 - T0 (seconds, e.g. from EPOCHREALTIME or date +%s.%N).
elapsed() {
	awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'
}

# sipp_register DIR HOST:PORT USERS_CSV LOCAL_IP LOCAL_PORT RATE CALLS: one bounded sipp run of
# bench/register's scenario (register_auth.xml: REGISTER, 401, REGISTER with digest, 200) in
# DIR, at RATE calls/s for CALLS calls; statistics in DIR/stat.csv, sipp's CPU time ("user sys")
# in DIR/sipp.rusage, the command line in DIR/command. Returns sipp's exit status.
sipp_register() {
	local dir=$1 target=$2 csv=$3 lip=$4 lport=$5 rate=$6 calls=$7 limit
	limit=$rate; ((limit < 1000)) && limit=1000
	local cmd=(sipp "$target" -sf "$BENCH_DIR_LIB/register/register_auth.xml" -inf "$csv"
		-i "$lip" -p "$lport" -t u1
		-r "$rate" -rp 1000 -m "$calls" -l "$limit"
		-recv_timeout 5000 -max_recv_loops 10000 -max_sched_loops 10000 -buff_size 4194304
		-nostdin -trace_stat -stf "$dir/stat.csv" -fd 1
		-trace_screen -screen_file "$dir/screen.log"
		-trace_error_codes -error_file "$dir/errors.log")
	echo "${cmd[*]}" >"$dir/command"
	# sipp's own -timeout does not abort calls in retransmission; bound it from outside:
	# SIGUSR1 makes sipp stop starting calls and finish (calls in progress end within
	# -recv_timeout) with its final statistics; KILL 5 s later if it has not.
	# /usr/bin/time records sipp's CPU time (rusage of the waited-for children).
	(cd "$dir" && /usr/bin/time -f "%U %S" -o "$dir/sipp.rusage" \
		timeout -s USR1 -k 5 "$SIPP_MAX_SECS" "${cmd[@]}" >"$dir/stdout" 2>&1 </dev/null)
}

# sipp_rusage DIR: sipp's CPU seconds (user + system) from DIR/sipp.rusage, or "NA".
sipp_rusage() {
	awk '{ l = $0 } END { n = split(l, r, " "); if (n == 2 && r[1] ~ /^[0-9.]+$/) print r[1] + r[2]; else print "NA" }' \
		"$1/sipp.rusage" 2>/dev/null || echo NA
}

# sipp_final_stats STAT_CSV CALLS: "ok failed secs retrans" from the last line of a sipp
# -trace_stat file (its final cumulative counters; failed includes the calls of CALLS never
# completed, secs is sipp's elapsed time, 0 if unknown). Fails (no output) without such a line.
sipp_final_stats() {
	awk -F';' -v calls="$2" '
		function lastf(s,  n, a) { n = split(s, a, "\t"); return a[n] }
		NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		NF > 10 { last = $0 }
		END {
			if (last == "") exit 1
			split(last, f, ";")
			el = lastf(f[col["CurrentTime"]]) - lastf(f[col["StartTime"]])
			ok = f[col["SuccessfulCall(C)"]] + 0; ko = f[col["FailedCall(C)"]] + 0
			# calls never completed (e.g. sipp stopped by the outer timeout) count as failures
			missing = calls - ok - ko; if (missing > 0) ko += missing
			printf "%d %d %.6f %d\n", ok, ko, el, f[col["Retransmissions(C)"]] + 0
		}' "$1" 2>/dev/null
}

# callgrind_ir FILE...: the total instructions ("summary:" or "totals:") of callgrind output
# files, summed; fails (saying which) if a file has none.
callgrind_ir() {
	local f one sum=0
	for f in "$@"; do
		one=$(awk '/^(summary|totals):/ { print $2; exit }' "$f" 2>/dev/null)
		[[ -n "$one" ]] || { echo "no counts in $f" >&2; return 1; }
		sum=$((sum + one))
	done
	echo "$sum"
}

# median VALUE...: the median of the numbers among the values (NA and empty ones skipped), "NA"
# without any.
median() {
	local v=() x
	for x in "$@"; do [[ "$x" == NA || -z "$x" ]] || v+=("$x"); done
	((${#v[@]} > 0)) || { echo NA; return; }
	printf '%s\n' "${v[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# below_max_fail PCT: true if the failure percentage PCT is below MAX_FAIL_PCT (a sustained run).
below_max_fail() {
	awk -v p="$1" -v m="$MAX_FAIL_PCT" 'BEGIN { exit !(p < m) }'
}

# note_busy OTHER_PCT: when the CPU used by other programs during a run exceeds BUSY_OTHER_PCT,
# say so on stderr and count the run in BUSY_RUNS.
note_busy() {
	if [[ "$1" =~ ^[0-9]+$ ]] && (($1 > BUSY_OTHER_PCT)); then
		echo "  ^ other programs used ${1}% CPU during this run (> ${BUSY_OTHER_PCT}%): figure not comparable" >&2
		BUSY_RUNS=$((BUSY_RUNS + 1))
	fi
}

# busy_warning: the summary's warning line if any run was flagged by note_busy.
busy_warning() {
	if ((BUSY_RUNS > 0)); then
		echo "WARNING: $BUSY_RUNS run(s) shared the CPUs with other programs (other% > ${BUSY_OTHER_PCT}); rerun on a quiet machine"
	fi
}
