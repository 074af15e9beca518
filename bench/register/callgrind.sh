#!/usr/bin/env bash
# Instructions per registration of our registrar, counted by valgrind's callgrind: the quiet
# figure, repeatable on a machine shared with other work (wall-clock rates and even CPU times
# move with the load; instruction counts hardly do).
#
# Runs the release registrar under `valgrind --tool=callgrind` twice, on the same users and
# config as run.sh, and drives it with sipp (register_auth.xml: REGISTER, 401, REGISTER with
# digest, 200) at a low fixed RATE: once for N registrations, once for 2N. Each run starts the
# registrar afresh, waits until it answers OPTIONS, runs sipp, then stops it with SIGTERM
# (callgrind writes its counts when the process exits). The start-up and shutdown cost is the
# same in both runs, so
#
#     Ir per registration = (Ir(2N) - Ir(N)) / (ok(2N) - ok(N))
#
# counts only the work per registration (user space of every registrar thread; the kernel's
# share of the sendto/recvfrom calls is not counted, see run.sh's us/reg for that). It also
# prints the start-up cost (Ir(N) - N x Ir/registration) and the functions that account for
# most of the difference (callgrind_annotate of both runs; self cost, then inclusive).
#
# Usage:
#   bench/register/callgrind.sh                      # N=2000 at 200/s, 10 000 users
#   N=5000 RATE=300 bench/register/callgrind.sh
#   BUILD=0 REGISTRAR_BIN=/path/to/switchboard-registrar bench/register/callgrind.sh
#
# Environment (all optional):
#   N=2000               registrations of the first run (the second runs 2N)
#   RATE=200             sipp's rate (registrations/s); low enough for the registrar under
#                        valgrind (~50x slower) to keep up with no retransmission
#   USERS=10000          users in the config (users.py; the first 2N of them register)
#   IP=127.0.0.1, OUR_PORT=25070, OUR_HTTP_PORT=25071, SIPP_PORT=25100   as in run.sh
#   BUILD=1              0: do not run `cargo build --release -p switchboard-registrar` first
#   REGISTRAR_BIN=<CARGO_TARGET_DIR or target>/release/switchboard-registrar
#   REGISTRAR_ARGS=      extra registrar arguments
#   TOP=25               functions listed in the breakdown
#   READY_TIMEOUT=120    seconds the registrar gets (under valgrind) to answer OPTIONS
#   KEEP=0               1: keep the run directory (callgrind.out.*, logs, sipp files)
#   WORKDIR=             use this directory instead of a new temp dir (implies KEEP=1)
#
# Output (stdout): one line per run (registrations asked, ok, failed, retransmissions, total Ir),
# then "Ir per registration", "start-up Ir", and the breakdown. Exit status: 0 measured; 1 a run
# failed (registrar did not start, sipp had failures, no callgrind output); 2 usage / tools.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

N=${N:-2000}
RATE=${RATE:-200}
USERS=${USERS:-10000}
IP=${IP:-127.0.0.1}
OUR_PORT=${OUR_PORT:-25070}
OUR_HTTP_PORT=${OUR_HTTP_PORT:-25071}
SIPP_PORT=${SIPP_PORT:-25100}
BUILD=${BUILD:-1}
REPO=$(cd "$HERE/../.." && pwd)
REGISTRAR_BIN=${REGISTRAR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/switchboard-registrar}
REGISTRAR_ARGS=${REGISTRAR_ARGS:-}
TOP=${TOP:-25}
READY_TIMEOUT=${READY_TIMEOUT:-120}
KEEP=${KEEP:-0}
REALM=bench.test

case "$IP" in 127.*) ;; *) die "IP must be a loopback address (127.x.y.z), got $IP" ;; esac
[[ "$N" =~ ^[0-9]+$ && "$N" -ge 10 ]] || die "N must be an integer >= 10"
[[ "$RATE" =~ ^[0-9]+$ && "$RATE" -ge 1 ]] || die "RATE must be a positive integer"
[[ "$USERS" =~ ^[0-9]+$ && "$USERS" -ge $((2 * N)) ]] || die "USERS must be at least 2N ($((2 * N)))"
require_tools valgrind callgrind_annotate sipp sipsak python3 timeout setsid awk /usr/bin/time
build_registrar "$REPO"

# sipp_register's outer bound: the calls at RATE, plus retransmission timeouts and a margin.
SIPP_MAX_SECS=$((2 * N / RATE * 2 + 60))
make_run_dir callgrind
bench_traps

echo "# generating $USERS users" >&2
python3 "$HERE/users.py" --out "$RUN/users" --count "$USERS" --realm "$REALM" >&2 || die "users.py failed"
mkdir -p "$RUN/config"
python3 "$HERE/registrar_config.py" --users "$RUN/users/users.tsv" --out "$RUN/config/registrar.yaml" \
	--realm "$REALM" --algorithms MD5 || die "registrar_config.py failed"

# count CALLS: one registrar under callgrind, CALLS registrations; prints "ok failed retrans Ir".
count() {
	local calls=$1 dir="$RUN/n$1" deadline pid
	mkdir -p "$dir"
	if port_answers "$IP" "$OUR_PORT"; then
		echo "something already answers SIP on $IP:$OUR_PORT; stop it or set OUR_PORT" >&2
		return 1
	fi
	# shellcheck disable=SC2086 # REGISTRAR_ARGS is a list of words
	spawn "$dir/registrar.log" $((READY_TIMEOUT + SIPP_MAX_SECS + 120)) env RUST_LOG=warn \
		valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
		"$REGISTRAR_BIN" --config "$RUN/config/registrar.yaml" --udp "$IP:$OUR_PORT" \
		--http "$IP:$OUR_HTTP_PORT" --replica bench $REGISTRAR_ARGS
	pid=$SPAWNED_PID
	deadline=$((SECONDS + READY_TIMEOUT))
	until port_answers "$IP" "$OUR_PORT"; do
		if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
			echo "registrar did not answer OPTIONS within ${READY_TIMEOUT}s:" >&2
			tail -n 20 "$dir/registrar.log" >&2
			stop_pgid "$pid"
			return 1
		fi
		sleep 0.5
	done
	sipp_register "$dir" "$IP:$OUR_PORT" "$RUN/users/users.csv" "$IP" "$SIPP_PORT" "$RATE" "$calls"
	local stats
	stats=$(sipp_final_stats "$dir/stat.csv" "$calls") || stats="0 $calls 0 0"
	# TERM reaches timeout, which passes it on to valgrind's guest: the registrar shuts down
	# gracefully and callgrind writes its file on exit.
	kill -TERM "$pid" 2>/dev/null
	deadline=$((SECONDS + 120))
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
	stop_pgid "$pid"
	local ir
	ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$dir/callgrind.out" 2>/dev/null)
	[[ -n "$ir" ]] || { echo "no callgrind output in $dir" >&2; return 1; }
	read -r ok ko _ rtx <<<"$stats"
	echo "$ok $ko $rtx $ir"
}

printf '%-8s %8s %8s %8s %16s\n' calls ok failed retrans Ir
declare -A OK IR
for calls in "$N" $((2 * N)); do
	line=$(count "$calls") || exit 1
	read -r ok ko rtx ir <<<"$line"
	printf '%-8s %8s %8s %8s %16s\n' "$calls" "$ok" "$ko" "$rtx" "$ir"
	if ((ko > 0)); then
		echo "sipp reported $ko failed registrations at $RATE/s: lower RATE" >&2
		exit 1
	fi
	OK[$calls]=$ok IR[$calls]=$ir
done

awk -v o1="${OK[$N]}" -v o2="${OK[$((2 * N))]}" -v i1="${IR[$N]}" -v i2="${IR[$((2 * N))]}" 'BEGIN {
	per = (i2 - i1) / (o2 - o1)
	printf "Ir per registration: %.0f   (REGISTER -> 401, REGISTER -> 200; registrar user space)\n", per
	printf "start-up and shutdown Ir: %.0f\n", i1 - o1 * per
}'

# The functions behind the difference: annotate both runs and subtract, per function.
breakdown() {
	local mode=$1
	for calls in "$N" $((2 * N)); do
		callgrind_annotate --inclusive="$mode" --threshold=100 "$RUN/n$calls/callgrind.out" 2>/dev/null |
			awk -v tag="$calls" '$1 ~ /^[0-9,]+$/ && NF >= 2 {
				# "1,234 (5.6%)  file:function [object]": the count, then the function alone
				ir = $1; gsub(",", "", ir); $1 = ""
				sub(/^ +(\([^)]*\) +)?/, ""); sub(/ +\[[^]]*\]$/, "")
				print tag "\t" ir "\t" $0
			}'
	done | awk -F'\t' -v n1="$N" -v regs="$((OK[$((2 * N))] - OK[$N]))" -v top="$TOP" '
		{ if ($1 == n1) a[$3] += $2; else b[$3] += $2 }
		END {
			for (f in b) { d = b[f] - a[f]; if (d > 0) printf "%.0f\t%s\n", d / regs, f }
		}' | sort -t$'\t' -k1,1 -gr | head -n "$TOP" |
		awk -F'\t' '{ printf "%10s  %s\n", $1, substr($2, 1, 150) }'
}
echo
echo "== Ir per registration by function, self cost (top $TOP)"
breakdown no
echo
echo "== Ir per registration by function, inclusive (top $TOP)"
breakdown yes
