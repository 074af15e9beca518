#!/usr/bin/env bash
# Instructions per call through Switchboard's proxy, under callgrind: the quiet figure on a
# shared machine, where wall-clock CPU per call scatters by ±20 % between runs.
#
# Runs bench/proxy/run.sh twice against the release registrar started under
# `valgrind --tool=callgrind` (Kamailio skipped), at RATE calls/s: once for N calls, once for
# 2N. The difference of the registrar's total instruction counts, divided by N, is the cost of
# one call (INVITE/100/180/200/ACK/BYE/200 relayed, routing and location lookup included); it
# cancels start-up, the UAS's REGISTER and shutdown. User space only: the kernel's share (socket
# calls, wake-ups) is not counted. Then prints the top functions of the 2N run by
# their self cost (`callgrind_annotate --inclusive=no`).
#
# Usage:
#   bench/proxy/callgrind.sh
#   N=1000 RATE=50 TOP=40 bench/proxy/callgrind.sh
# Environment: N (500 calls), RATE (50 calls/s: low enough for the registrar under valgrind,
#   ~50x slower, to keep up without retransmissions), TOP (30 functions), REGISTRAR_BIN (the
#   release binary; default ${CARGO_TARGET_DIR:-target}/release/switchboard-registrar),
#   BUILD (1: cargo build --release first), OUT (/var/tmp/switchboard-cg-proxy: where the
#   callgrind files stay, cg.N and cg.2N).

set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
N=${N:-500}
RATE=${RATE:-50}
TOP=${TOP:-30}
BUILD=${BUILD:-1}
OUT=${OUT:-/var/tmp/switchboard-cg-proxy}
REGISTRAR_BIN=${REGISTRAR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/switchboard-registrar}
[[ "$N" =~ ^[0-9]+$ && "$RATE" =~ ^[0-9]+$ && "$N" -ge "$RATE" && $((N % RATE)) == 0 ]] ||
	die "N must be a multiple of RATE"
require_tools valgrind callgrind_annotate sipp
build_registrar "$REPO"
mkdir -p "$OUT"
WRAP=$OUT/wrap.sh
cat >"$WRAP" <<SH
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file="\$CG_FILE" "$REGISTRAR_BIN" "\$@"
SH
chmod +x "$WRAP"

total_ir() { # total_ir FILE: the "summary:" (total instructions) of a callgrind file
	awk '/^(summary|totals):/ { print $2; exit }' "$1"
}

for calls in "$N" $((2 * N)); do
	rm -f "$OUT/cg.$calls"
	echo "# $calls calls at $RATE/s under callgrind" >&2
	CG_FILE=$OUT/cg.$calls BUILD=0 SKIP_KAMAILIO=1 REGISTRAR_BIN=$WRAP RATES=$RATE \
		DURATION=$((calls / RATE)) "$HERE/run.sh" >"$OUT/run.$calls.txt"
	cat "$OUT/run.$calls.txt"
	# valgrind writes its file when the registrar exits (run.sh TERMs it at the end)
	for ((i = 0; i < 100; i++)); do [[ -s "$OUT/cg.$calls" ]] && break; sleep 0.1; done
	[[ -s "$OUT/cg.$calls" ]] || die "no callgrind output for $calls calls"
	awk '$1 == "switchboard" && $5 == 0 { ok = 1 } END { exit !ok }' "$OUT/run.$calls.txt" ||
		echo "# warning: failed calls in the $calls-call run, the figure is off" >&2
done

a=$(total_ir "$OUT/cg.$N")
b=$(total_ir "$OUT/cg.$((2 * N))")
echo
echo "instructions: $N calls $a, $((2 * N)) calls $b"
echo "instructions per call: $(((b - a) / N))"
echo
echo "top functions (self), $((2 * N)) calls:"
callgrind_annotate --inclusive=no "$OUT/cg.$((2 * N))" 2>/dev/null |
	awk '/^-+$/ { d++; next } d >= 3 && NF' | head -n "$TOP"
