#!/usr/bin/env bash
# Instructions per call through Switchboard's proxy and through Kamailio 5.6 (-x tlsf), under
# callgrind: the quiet figure on a shared machine, where wall-clock CPU per call scatters by
# ±20 % between runs.
#
# Runs bench/proxy/run.sh twice per server, the server started under
# `valgrind --tool=callgrind` (Kamailio with every process it forks traced), each time for
# N/RATE seconds: once at RATE calls/s (N calls), once at twice that (2N). The difference of
# the server's total instruction counts (summed over its processes), divided by N, is the cost
# of one call (INVITE/100/180/200/ACK/BYE/200 relayed; for ours routing and location lookup
# included); it cancels start-up, the UAS's REGISTER, shutdown and what a server does idle
# over the same time. User space only: the kernel's share (socket calls, wake-ups) is not
# counted. Then prints the ratio (also without SHA-256 in software: valgrind's CPU has no SHA
# extensions, the real one has) and the top functions of our 2N run by their self cost
# (`callgrind_annotate --inclusive=no`).
#
# Usage:
#   bench/proxy/callgrind.sh
#   N=1000 RATE=50 TOP=40 KAMAILIO=0 bench/proxy/callgrind.sh
# Environment: N (500 calls), RATE (50 calls/s, twice that in the 2N run: low enough for the
#   servers under valgrind, ~50x slower, to keep up without retransmissions), TOP (30
#   functions), REGISTRAR_BIN (the release binary; default
#   ${CARGO_TARGET_DIR:-target}/release/switchboard-registrar), BUILD (1: cargo build --release
#   first), KAMAILIO (1; 0: ours only), OUT (/var/tmp/switchboard-cg-proxy: where the callgrind
#   files stay, cg.N and cg.2N for ours, kamailio.N/ and kamailio.2N/ with a file per process
#   for Kamailio).

set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
N=${N:-500}
RATE=${RATE:-50}
TOP=${TOP:-30}
BUILD=${BUILD:-1}
KAMAILIO=${KAMAILIO:-1}
OUT=${OUT:-/var/tmp/switchboard-cg-proxy}
REGISTRAR_BIN=${REGISTRAR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/switchboard-registrar}
[[ "$N" =~ ^[0-9]+$ && "$RATE" =~ ^[0-9]+$ && "$N" -ge "$RATE" && $((N % RATE)) == 0 ]] ||
	die "N must be a multiple of RATE"
require_tools valgrind callgrind_annotate sipp
[[ "$KAMAILIO" == 1 ]] && require_tools kamailio
build_registrar "$REPO"
mkdir -p "$OUT"
WRAP=$OUT/wrap.sh
cat >"$WRAP" <<SH
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file="\$CG_FILE" "$REGISTRAR_BIN" "\$@"
SH
chmod +x "$WRAP"

KWRAP=$OUT/kamailio-wrap.sh
cat >"$KWRAP" <<SH
#!/bin/sh
exec valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="\$CG_DIR/cg.%p" kamailio "\$@"
SH
chmod +x "$KWRAP"

sha_ir() { # sha_ir FILE: the self instructions of SHA-256's compression function in FILE
	callgrind_annotate --inclusive=no --threshold=100 "$1" 2>/dev/null |
		awk '/sha2::sha256::compress256/ { gsub(",", "", $1); s += $1 } END { print s + 0 }'
}

# measure NAME CALLS: run.sh with NAME (switchboard or kamailio) alone under callgrind for
# CALLS calls; prints the total instructions of its processes.
measure() {
	local name=$1 calls=$2 txt=$OUT/run.$1.$2.txt files rate=$(($2 * RATE / N))
	echo "# $name: $calls calls at $rate/s under callgrind" >&2
	if [[ "$name" == kamailio ]]; then
		rm -rf "$OUT/kamailio.$calls" && mkdir -p "$OUT/kamailio.$calls"
		CG_DIR=$OUT/kamailio.$calls KAMAILIO_BIN=$KWRAP BUILD=0 SKIP_SWITCHBOARD=1 RATES=$rate \
			DURATION=$((N / RATE)) "$HERE/run.sh" >"$txt"
		files=("$OUT/kamailio.$calls"/cg.*)
	else
		rm -f "$OUT/cg.$calls"
		CG_FILE=$OUT/cg.$calls BUILD=0 SKIP_KAMAILIO=1 REGISTRAR_BIN=$WRAP RATES=$rate \
			DURATION=$((N / RATE)) "$HERE/run.sh" >"$txt"
		# valgrind writes its file when the registrar exits (run.sh TERMs it at the end)
		for ((i = 0; i < 100; i++)); do [[ -s "$OUT/cg.$calls" ]] && break; sleep 0.1; done
		files=("$OUT/cg.$calls")
	fi
	cat "$txt" >&2
	[[ -s "${files[0]}" ]] || die "no callgrind output for $name, $calls calls"
	awk -v n="$name" '$1 == n && $6 == 0 { ok = 1 } END { exit !ok }' "$txt" ||
		echo "# warning: failed calls in $name's $calls-call run, the figure is off" >&2
	callgrind_ir "${files[@]}" || die "no callgrind counts for $name, $calls calls"
}

SERVERS=(switchboard)
[[ "$KAMAILIO" == 1 ]] && SERVERS+=(kamailio)
declare -A PER
echo
for name in "${SERVERS[@]}"; do
	a=$(measure "$name" "$N")
	b=$(measure "$name" $((2 * N)))
	PER[$name]=$(((b - a) / N))
	echo "$name instructions: $N calls $a, $((2 * N)) calls $b; per call: ${PER[$name]}"
done
if [[ "$KAMAILIO" == 1 ]]; then
	sha_a=$(sha_ir "$OUT/cg.$N")
	sha_b=$(sha_ir "$OUT/cg.$((2 * N))")
	awk -v ours="${PER[switchboard]}" -v kam="${PER[kamailio]}" -v sha="$(((sha_b - sha_a) / N))" 'BEGIN {
		printf "ratio switchboard / kamailio: %.2f\n", ours / kam
		printf "without SHA-256 in software (%d per call, sha2::sha256::compress256; the real CPU has SHA extensions): %d, ratio %.2f\n", sha, ours - sha, (ours - sha) / kam
	}'
fi
echo
echo "top functions (self), $((2 * N)) calls:"
callgrind_annotate --inclusive=no "$OUT/cg.$((2 * N))" 2>/dev/null |
	awk '/^-+$/ { d++; next } d >= 3 && NF' | head -n "$TOP"
