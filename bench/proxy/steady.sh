#!/usr/bin/env bash
# Two builds of our registrar compared at the proxy's steady size: CPU per call once every
# transaction it holds has reached the end of its 32 s (Timers J and L), which alternated
# 10-s rounds never reach (bench/proxy/README.md, "The deadlines in a timing wheel").
#
# Per pair, build A then build B each get one DURATION-s run of run.sh at RATE calls/s
# (SKIP_KAMAILIO=1, BUILD=0); the registrar's CPU time (user + system, /proc/PID/stat) is read
# over SECS seconds from FROM seconds after the run was started (lib.sh's session_ticks).
# Printed per run: the build, the pair, µs of CPU per call in that window, and run.sh's line
# for the run (achieved rate, ok, failed, ...). At the end: each build's median and the ratio
# of the medians (B / A).
#
# Usage:
#   A=/tmp/before/switchboard-registrar B=target/release/switchboard-registrar bench/proxy/steady.sh
#   A=... B=... PAIRS=4 RATE=4000 bench/proxy/steady.sh
# Environment: A, B (release binaries, required), PAIRS (3), RATE (3000 calls/s), DURATION (60),
#   FROM (42), SECS (15; FROM + SECS must end before the run does). Any other run.sh setting
#   (ports, IP) is passed through.

set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
A=${A:-}
B=${B:-}
PAIRS=${PAIRS:-3}
RATE=${RATE:-3000}
DURATION=${DURATION:-60}
FROM=${FROM:-42}
SECS=${SECS:-15}
[[ -x "$A" && -x "$B" ]] || die "A and B must name two registrar binaries"
[[ "$PAIRS" =~ ^[1-9][0-9]?$ && "$RATE" =~ ^[1-9][0-9]*$ ]] || die "PAIRS (1..99) and RATE must be positive integers"
[[ "$FROM" =~ ^[0-9]+$ && "$SECS" =~ ^[1-9][0-9]*$ && "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "FROM, SECS and DURATION must be integers"
((FROM + SECS < DURATION)) || die "the window (FROM + SECS) must end before the run (DURATION)"
HZ=$(getconf CLK_TCK)
LOG=$(mktemp /tmp/switchboard-steady.XXXXXX)
trap 'rm -f "$LOG"' EXIT

# registrar_session BIN: the session run.sh's spawn() started the registrar from BIN in
# (waits up to 20 s for it), for lib.sh's session_ticks.
registrar_session() {
	local i pid
	for ((i = 0; i < 200; i++)); do
		pid=$(pgrep -f -n "^$1 --config") && { ps -o sid= -p "$pid" | tr -d ' '; return; }
		sleep 0.1
	done
	die "no registrar from $1 appeared"
}

# ticks SID: session_ticks, failing when the session is gone.
ticks() {
	local t
	t=$(session_ticks "$1")
	[[ "$t" != NA ]] && echo "$t"
}

# steady_run BIN: one run; prints µs of CPU per call in the window, then run.sh's line.
steady_run() {
	SKIP_KAMAILIO=1 BUILD=0 REGISTRAR_BIN="$1" RATES="$RATE" DURATION="$DURATION" \
		"$HERE/run.sh" >"$LOG" 2>&1 &
	local runner=$! start=$EPOCHREALTIME sid t0 t1
	# A registrar gone before the window ends leaves no figure: the run is stopped and the
	# caller sees none.
	sid=$(registrar_session "$1") || { kill "$runner"; exit 2; }
	sleep "$(awk -v f="$FROM" -v s="$start" -v n="$EPOCHREALTIME" 'BEGIN { d = f - (n - s); print (d > 0 ? d : 0) }')"
	t0=$(ticks "$sid") && sleep "$SECS" && t1=$(ticks "$sid") || { kill "$runner"; exit 2; }
	wait "$runner" || { cat "$LOG" >&2; die "run.sh failed"; }
	awk -v t=$((t1 - t0)) -v hz="$HZ" -v r="$RATE" -v s="$SECS" 'BEGIN { printf "%.1f", t * 1e6 / hz / (r * s) }'
	echo " $(grep -E '^switchboard ' "$LOG" | tail -1)"
}

declare -A PER_CALL=([A]="" [B]="")
for ((pair = 1; pair <= PAIRS; pair++)); do
	for build in A B; do
		read -r us line < <(steady_run "${!build}")
		[[ -n "${us:-}" ]] || die "no figure for $build in pair $pair (its registrar was gone)"
		PER_CALL[$build]+=" $us"
		echo "$build pair $pair: $us us/call  run: $line"
	done
done
ma=$(median ${PER_CALL[A]})
mb=$(median ${PER_CALL[B]})
echo "median us/call: A $ma, B $mb; B / A $(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.2f", b / a }')"
