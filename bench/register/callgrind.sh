#!/usr/bin/env bash
# Instructions per registration of our registrar, and of Kamailio 5.6 (-x tlsf) in the same run,
# counted by valgrind's callgrind: the quiet figure, repeatable on a machine shared with other
# work (wall-clock rates and even CPU times move with the load; instruction counts hardly do).
#
# Runs the release registrar under `valgrind --tool=callgrind` twice, on the same users and
# config as run.sh, and drives it with sipp (register_auth.xml: REGISTER, 401, REGISTER with
# digest, 200) for N/RATE seconds: at RATE (N registrations), then at 2 x RATE (2N). Each run
# starts the registrar afresh, waits until it answers OPTIONS, runs sipp, then stops it with
# SIGTERM (callgrind writes its counts when the process exits). The start-up and shutdown cost,
# and what the server does idle over those seconds, are the same in both runs, so
#
#     Ir per registration = (Ir(2N) - Ir(N)) / (ok(2N) - ok(N))
#
# counts only the work per registration (user space of every registrar thread; the kernel's
# share of the sendto/recvfrom calls is not counted, see run.sh's us/reg for that). It also
# prints the start-up cost (Ir(N) - N x Ir/registration) and the functions that account for
# most of the difference (callgrind_annotate of both runs; self cost, then inclusive).
#
# Then the same for Kamailio on run.sh's config (kamailio.sh), every process it forks traced
# (--trace-children) and summed, and the ratio. One caveat, printed with it: valgrind's CPU has
# no SHA extensions, so our nonce HMACs run SHA-256 in software under it (about 14 000 Ir per
# registration, `sha2::sha256::compress256`) where the real CPU runs them in a few hundred
# cycles; the ratio without that function is printed too. Kamailio's nonces use MD5, in
# software either way.
#
# Usage:
#   bench/register/callgrind.sh                      # N=2000 at 200/s, 10 000 users
#   N=5000 RATE=300 bench/register/callgrind.sh
#   BUILD=0 REGISTRAR_BIN=/path/to/switchboard-registrar bench/register/callgrind.sh
#
# Environment (all optional):
#   N=2000               registrations of the first run (the second runs 2N)
#   RATE=200             sipp's rate (registrations/s) in the first run, twice it in the
#                        second; low enough for the registrar under valgrind (~50x slower) to
#                        keep up with no retransmission
#   USERS=10000          users in the config (users.py; the first 2N of them register). With
#                        USERS=N every user registers once in the first run and twice in the
#                        second, so the difference counts refreshes of a live binding (what
#                        run.sh's steady load is) instead of first registrations
#   IP=127.0.0.1, OUR_PORT=25070, OUR_HTTP_PORT=25071, SIPP_PORT=25100   as in run.sh
#   BUILD=1              0: do not run `cargo build --release -p switchboard-registrar` first
#   REGISTRAR_BIN=<CARGO_TARGET_DIR or target>/release/switchboard-registrar
#   REGISTRAR_ARGS=      extra registrar arguments
#   TOP=25               functions listed in the breakdown
#   KAMAILIO=1           0: do not measure Kamailio
#   KAM_PORT=25060, KAM_MEM=tlsf   Kamailio's UDP port and memory manager, as in run.sh
#   READY_TIMEOUT=120    seconds the registrar gets (under valgrind) to answer OPTIONS
#   KEEP=0               1: keep the run directory (callgrind.out.*, logs, sipp files)
#   WORKDIR=             use this directory instead of a new temp dir (implies KEEP=1)
#
# Output (stdout): one line per run (server, registrations asked, ok, failed, retransmissions,
# total Ir), then our "Ir per registration" and "start-up Ir", Kamailio's Ir per registration and
# the ratios, and the breakdown of ours. Exit status: 0 measured; 1 a run
# failed (registrar did not start, sipp had failures, no callgrind output); 2 usage / tools.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
# shellcheck source=kamailio.sh
. "$HERE/kamailio.sh"

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
KAMAILIO=${KAMAILIO:-1}
KAM_PORT=${KAM_PORT:-25060}
KAM_MEM=${KAM_MEM:-tlsf}
TOP=${TOP:-25}
READY_TIMEOUT=${READY_TIMEOUT:-120}
KEEP=${KEEP:-0}
REALM=bench.test

case "$IP" in 127.*) ;; *) die "IP must be a loopback address (127.x.y.z), got $IP" ;; esac
[[ "$N" =~ ^[0-9]+$ && "$N" -ge 10 ]] || die "N must be an integer >= 10"
[[ "$RATE" =~ ^[0-9]+$ && "$RATE" -ge 1 ]] || die "RATE must be a positive integer"
[[ "$USERS" =~ ^[0-9]+$ && ("$USERS" -eq "$N" || "$USERS" -ge $((2 * N))) ]] ||
	die "USERS must be N ($N: refreshes) or at least 2N ($((2 * N)): first registrations)"
require_tools valgrind callgrind_annotate sipp sipsak python3 timeout setsid awk /usr/bin/time
[[ "$KAMAILIO" == 1 ]] && require_tools kamailio
build_registrar "$REPO"

# sipp_register's outer bound: N/RATE seconds of registrations, plus retransmission timeouts
# and a margin.
SIPP_MAX_SECS=$((N / RATE * 2 + 60))
make_run_dir callgrind
bench_traps

echo "# generating $USERS users" >&2
python3 "$HERE/users.py" --out "$RUN/users" --count "$USERS" --realm "$REALM" >&2 || die "users.py failed"
mkdir -p "$RUN/config"
python3 "$HERE/registrar_config.py" --users "$RUN/users/users.tsv" --out "$RUN/config/registrar.yaml" \
	--realm "$REALM" --algorithms MD5 || die "registrar_config.py failed"
if [[ "$KAMAILIO" == 1 ]]; then
	kamailio_config "$RUN/kamailio" "$IP" "$KAM_PORT" "$RUN/users" || die "Kamailio's config failed its check"
fi

# count NAME CALLS: NAME (switchboard or kamailio) under callgrind, CALLS registrations; prints
# "ok failed retrans Ir", Ir summed over every process (Kamailio forks its workers).
count() {
	local name=$1 calls=$2 dir="$RUN/$1/n$2" port deadline pid cmd
	mkdir -p "$dir"
	local vg=(valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$dir/callgrind.out.%p")
	if [[ "$name" == kamailio ]]; then
		port=$KAM_PORT
		kamailio_args "$RUN/kamailio" "$KAM_MEM"
		cmd=("${vg[@]}" "${KAMAILIO_ARGS[@]}")
	else
		port=$OUR_PORT
		# shellcheck disable=SC2206 # REGISTRAR_ARGS is a list of words
		cmd=(env RUST_LOG=warn "${vg[@]}" "$REGISTRAR_BIN" --config "$RUN/config/registrar.yaml"
			--udp "$IP:$port" --http "$IP:$OUR_HTTP_PORT" --replica bench $REGISTRAR_ARGS)
	fi
	if port_answers "$IP" "$port"; then
		echo "something already answers SIP on $IP:$port; stop it or pick another port" >&2
		return 1
	fi
	spawn "$dir/server.log" $((READY_TIMEOUT + SIPP_MAX_SECS + 120)) "${cmd[@]}"
	pid=$SPAWNED_PID
	deadline=$((SECONDS + READY_TIMEOUT))
	until port_answers "$IP" "$port"; do
		if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
			echo "$name did not answer OPTIONS within ${READY_TIMEOUT}s:" >&2
			tail -n 20 "$dir/server.log" >&2
			stop_pgid "$pid"
			return 1
		fi
		sleep 0.5
	done
	# Both runs last N/RATE seconds (2N at twice the rate): what a server does idle over that
	# time cancels out with its start-up.
	sipp_register "$dir" "$IP:$port" "$RUN/users/users.csv" "$IP" "$SIPP_PORT" $((calls * RATE / N)) "$calls"
	local stats
	stats=$(sipp_final_stats "$dir/stat.csv" "$calls") || stats="0 $calls 0 0"
	# TERM reaches timeout, which passes it on to valgrind's guest: the server shuts down
	# gracefully (Kamailio's main process stops its workers) and callgrind writes a file per
	# process on exit.
	kill -TERM "$pid" 2>/dev/null
	deadline=$((SECONDS + 120))
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
	stop_pgid "$pid"
	local ir
	ir=$(callgrind_ir "$dir"/callgrind.out.*) || return 1
	((ir > 0)) || { echo "no callgrind output in $dir" >&2; return 1; }
	read -r ok ko _ rtx <<<"$stats"
	echo "$ok $ko $rtx $ir"
}

SERVERS=(switchboard)
[[ "$KAMAILIO" == 1 ]] && SERVERS+=(kamailio)
printf '%-12s %8s %8s %8s %8s %16s\n' server calls ok failed retrans Ir
declare -A OK IR PER
for name in "${SERVERS[@]}"; do
	for calls in "$N" $((2 * N)); do
		line=$(count "$name" "$calls") || exit 1
		read -r ok ko rtx ir <<<"$line"
		printf '%-12s %8s %8s %8s %8s %16s\n' "$name" "$calls" "$ok" "$ko" "$rtx" "$ir"
		if ((ko > 0)); then
			echo "sipp reported $ko failed registrations at $((calls * RATE / N))/s with $name: lower RATE" >&2
			exit 1
		fi
		OK[$name@$calls]=$ok IR[$name@$calls]=$ir
	done
	PER[$name]=$(awk -v o1="${OK[$name@$N]}" -v o2="${OK[$name@$((2 * N))]}" \
		-v i1="${IR[$name@$N]}" -v i2="${IR[$name@$((2 * N))]}" 'BEGIN { printf "%.0f", (i2 - i1) / (o2 - o1) }')
done

awk -v o1="${OK[switchboard@$N]}" -v per="${PER[switchboard]}" -v i1="${IR[switchboard@$N]}" 'BEGIN {
	printf "Ir per registration: %.0f   (REGISTER -> 401, REGISTER -> 200; registrar user space)\n", per
	printf "start-up and shutdown Ir: %.0f\n", i1 - o1 * per
}'

# The functions behind the difference: annotate both runs and subtract, per function.
breakdown() {
	local mode=$1 f
	for calls in "$N" $((2 * N)); do
		for f in "$RUN/switchboard/n$calls"/callgrind.out.*; do
			callgrind_annotate --inclusive="$mode" --threshold=100 "$f" 2>/dev/null
		done |
			awk -v tag="$calls" '$1 ~ /^[0-9,]+$/ && NF >= 2 {
				# "1,234 (5.6%)  file:function [object]": the count, then the function alone
				ir = $1; gsub(",", "", ir); $1 = ""
				sub(/^ +(\([^)]*\) +)?/, ""); sub(/ +\[[^]]*\]$/, "")
				print tag "\t" ir "\t" $0
			}'
	done | awk -F'\t' -v n1="$N" -v regs="$((OK[switchboard@$((2 * N))] - OK[switchboard@$N]))" '
		{ if ($1 == n1) a[$3] += $2; else b[$3] += $2 }
		END {
			for (f in b) { d = b[f] - a[f]; if (d > 0) printf "%.0f\t%s\n", d / regs, f }
		}' | sort -t$'\t' -k1,1 -gr
}
SELF=$(breakdown no)
echo
if [[ -n "${PER[kamailio]:-}" ]]; then
	sha=$(awk -F'\t' '$2 ~ /sha2::sha256::compress256/ { s += $1 } END { print s + 0 }' <<<"$SELF")
	awk -v ours="${PER[switchboard]}" -v kam="${PER[kamailio]}" -v sha="$sha" -v mem="$KAM_MEM" 'BEGIN {
		printf "kamailio (-x %s) Ir per registration: %.0f; ratio switchboard / kamailio: %.2f\n", mem, kam, ours / kam
		printf "without SHA-256 in software (%.0f Ir, sha2::sha256::compress256; the real CPU has SHA extensions): %.0f, ratio %.2f\n", sha, ours - sha, (ours - sha) / kam
	}'
	echo
fi
show() { head -n "$TOP" | awk -F'\t' '{ printf "%10s  %s\n", $1, substr($2, 1, 150) }'; }
echo "== Ir per registration by function, self cost (top $TOP)"
show <<<"$SELF"
echo
echo "== Ir per registration by function, inclusive (top $TOP)"
breakdown yes | show
