#!/usr/bin/env bash
# Call benchmark: calls/s through Switchboard's proxy beside Kamailio 5.6 doing the same stateful
# relay (tm + record_route, no digest on either side), same machine, same sipp scenarios.
#
# One call: sipp UAC --INVITE--> proxy --> sipp UAS (180, 200) --> ACK and BYE along the
# Record-Route --> 200 (uac.xml, uas.xml). For Switchboard the UAS first REGISTERs (register.xml,
# digest) as device 2000 of site bench.test from the port it then listens on, and the caller
# comes from a trustedPeers address (127.0.0.0/8), so the proxy routes by extension to the
# registered binding. Kamailio relays every INVITE to the UAS's address (kamailio.cfg.tmpl).
#
# Both servers are started first and stay up (idle while the other is measured). Then, ROUNDS
# times over, rate by rate, each server in turn gets RATE*DURATION calls at RATE calls/s: their
# runs alternate, so a change in the machine's speed lands on both alike (one server measured
# minutes after the other cost it 10-15 % in the ratio, bench/proxy/README.md). Printed per run:
# server, target, round, achieved successful calls/s (over the wall time of the sipp run), ok,
# failed, fail%, server CPU (% of one core over the run), other% (CPU of the rest of the
# machine besides the server and both sipps, % of one core: high means the run was disturbed),
# server CPU time per call (us, from /proc/PID/stat of all the server's processes) and sys%
# (the share of that CPU spent in the kernel: system time, mostly the socket calls).
# At the end: each server's best rate (highest achieved with < MAX_FAIL_PCT % failures), the
# ratio of the rates, and per target rate the median CPU per call of each server over the
# rounds, their ratio (Switchboard / Kamailio) and the ratio round by round, then each
# server's median sys%.
#
# Usage:
#   bench/proxy/run.sh
#   RATES="1000 2000 4000" DURATION=10 bench/proxy/run.sh
#   BUILD=0 ROUNDS=5 RATES="3000 4000" bench/proxy/run.sh   # medians of five alternated rounds
#   BUILD=0 WARMUP=40 ROUNDS=5 RATES="3000 4000" bench/proxy/run.sh   # both at their steady size
#   BUILD=0 SKIP_KAMAILIO=1 bench/proxy/run.sh
# Environment: RATES ("500 1000 2000 3000"), DURATION (10), ROUNDS (1; 1..20), WARMUP (0: seconds
#   of calls at the first rate each server gets before the rounds, not counted: Kamailio's first
#   run costs it 15-30 % more per call than its later ones, and ours holds each transaction 32 s
#   after its final response, so its memory grows for that long), MAX_FAIL_PCT (1),
#   BUSY_OTHER_PCT (40: flag a run whose other% is above it), IP (127.0.0.1),
#   KAM_PORT (26060), OUR_PORT (26070), UAS_PORT (26090), UAC_PORT (26100), BUILD (1: cargo
#   build --release), REGISTRAR_BIN, SKIP_KAMAILIO, SKIP_SWITCHBOARD, KEEP (1: keep the run dir),
#   KAM_SHM_MB (1024: Kamailio shared memory; its 64 MB default runs out of transactions here),
#   KAM_MEM (tlsf: Kamailio memory manager, -x; qm is its debugging-friendly default),
#   KAMAILIO_BIN (kamailio: the command that starts it; callgrind.sh passes a wrapper),
#   WORKDIR (use this directory instead of a new temp dir; implies KEEP=1).
# Every process started here runs in its own process group (session) under `timeout` and is
# stopped (TERM, then KILL after 5 s) on exit, also on Ctrl-C / TERM (bench/lib.sh).

set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
RATES=${RATES:-"500 1000 2000 3000"}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-1}
WARMUP=${WARMUP:-0}
BUSY_OTHER_PCT=${BUSY_OTHER_PCT:-40}
MAX_FAIL_PCT=${MAX_FAIL_PCT:-1}
IP=${IP:-127.0.0.1}
KAM_PORT=${KAM_PORT:-26060}
OUR_PORT=${OUR_PORT:-26070}
OUR_HTTP=${OUR_HTTP:-26071}
UAS_PORT=${UAS_PORT:-26090}
UAC_PORT=${UAC_PORT:-26100}
BUILD=${BUILD:-1}
SKIP_KAMAILIO=${SKIP_KAMAILIO:-0}
SKIP_SWITCHBOARD=${SKIP_SWITCHBOARD:-0}
KEEP=${KEEP:-0}
KAM_SHM_MB=${KAM_SHM_MB:-1024}
KAM_MEM=${KAM_MEM:-tlsf}
KAMAILIO_BIN=${KAMAILIO_BIN:-kamailio}
REGISTRAR_BIN=${REGISTRAR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/switchboard-registrar}
HZ=$(getconf CLK_TCK)

check_duration_rates
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 && "$ROUNDS" -le 20 ]] || die "ROUNDS must be 1..20"
[[ "$WARMUP" =~ ^[0-9]+$ && "$WARMUP" -le 300 ]] || die "WARMUP must be 0..300"
require_tools sipp timeout setsid awk python3 /usr/bin/time
[[ "$SKIP_KAMAILIO" == 1 ]] || require_tools kamailio
[[ "$SKIP_SWITCHBOARD" == 1 ]] || build_registrar "$REPO"

# How long a server may live: every run of both (a sipp run is bounded by 3 x its seconds + 30)
# and a margin.
SERVER_MAX_SECS=$((2 * (WARMUP * 3 + 40 + ROUNDS * $(wc -w <<<"$RATES") * (DURATION * 3 + 40)) + 120))

make_run_dir proxy
bench_traps

wait_options() { # wait_options PORT: until the server answers OPTIONS
	local i
	for ((i = 0; i < 100; i++)); do
		if python3 - "$IP" "$1" <<'PY' 2>/dev/null; then return 0; fi
import socket, sys
ip, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2); s.bind((ip, 0))
lp = s.getsockname()[1]
s.sendto((f"OPTIONS sip:{ip}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {ip}:{lp};branch=z9hG4bK-ready\r\n"
          f"From: <sip:probe@{ip}>;tag=1\r\nTo: <sip:{ip}>\r\nCall-ID: ready\r\nCSeq: 1 OPTIONS\r\n"
          "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode(), (ip, port))
s.recvfrom(4096)
PY
		sleep 0.1
	done
	return 1
}

stat_of() { # stat_of FILE LABEL: cumulative value of a sipp statistics line
	awk -F'|' -v l="$2" 'index($1, l) { v = $3 } END { gsub(/ /, "", v); print v + 0 }' "$1"
}
RESULTS=$RUN/results.txt
printf '%-12s %7s %5s %10s %8s %7s %6s %6s %6s %8s %5s\n' server target round achieved/s ok failed fail% \
	srv% other% us/call sys% | tee "$RESULTS"
BUSY_RUNS=0
# US_AT[NAME@RATE]: the server's CPU per call at RATE, round by round (NA where none succeeded);
# SYS_AT[NAME@RATE]: the kernel's share of that CPU (%), round by round.
declare -A US_AT SYS_AT

# run_once NAME PORT SERVER_PGID REGISTER(0/1) RATE ROUND [SECONDS]: one sipp run of
# RATE*SECONDS (DURATION) calls; round 0 is a warm-up, reported on stderr and not counted.
run_once() {
	local name=$1 port=$2 pg=$3 reg=$4 rate=$5 round=$6 secs=${7:-$DURATION}
	local dir=$RUN/$name-$rate-$round calls=$((rate * secs))
	mkdir -p "$dir"
	if [[ "$reg" == 1 ]]; then
		(cd "$dir" && timeout 20 sipp "$IP:$port" -sf "$HERE/register.xml" -m 1 -i "$IP" -p "$UAS_PORT" \
			-key user 2000 -key domain bench.test -au 2000 -ap bench-2000 -nostdin -timeout 10 \
			-timeout_error >register.out 2>&1) || { echo "# $name: REGISTER failed" >&2; cat "$dir/register.out" >&2; return 1; }
	fi
	spawn "$dir/uas.out" $((secs * 4 + 30)) sipp -sf "$HERE/uas.xml" -i "$IP" -p "$UAS_PORT" \
		-nostdin
	local uas=$SPAWNED_PID
	sleep 0.3
	local t0 c0 m0 u0 t1 c1 m1 u1
	t0=$(date +%s.%N); c0=$(session_user_sys "$pg"); m0=$(machine_ticks); u0=$(session_ticks "$uas")
	(cd "$dir" && /usr/bin/time -f "%U %S" -o "$dir/sipp.rusage" timeout $((secs * 3 + 30)) \
		sipp "$IP:$port" -sf "$HERE/uac.xml" -s 2000 -r "$rate" -m "$calls" -i "$IP" -p "$UAC_PORT" \
		-nostdin -recv_timeout 5000 -timeout $((secs * 3 + 20)) -l 100000 >uac.out 2>&1)
	t1=$(date +%s.%N); c1=$(session_user_sys "$pg"); m1=$(machine_ticks); u1=$(session_ticks "$uas")
	stop_pgid "$uas"
	local ok line w
	ok=$(stat_of "$dir/uac.out" "Successful call")
	w=$(elapsed "$t0" "$t1")
	line=$(awk -v n="$name" -v r="$rate" -v rd="$round" -v ok="$ok" -v f=$((calls - ok)) \
		-v c=$(($(ticks_total "$c1") - $(ticks_total "$c0"))) -v sys="$(sys_share "$c0" "$c1")" \
		-v hz="$HZ" -v w="$w" -v busy="$(machine_busy "$m0" "$m1" "$w")" -v u=$((u1 - u0)) \
		-v uac="$(sipp_rusage "$dir")" 'BEGIN {
		ach = w > 0 ? ok / w : 0; tot = ok + f; pct = tot ? 100 * f / tot : 100
		other = busy - (c + u) / hz - uac; if (other < 0) other = 0
		other = (uac == "NA") ? "NA" : sprintf("%.0f", 100 * other / w)
		printf "%-12s %7d %5d %10.0f %8d %7d %6.2f %6.0f %6s %8s %5s\n", n, r, rd, ach, ok, f, pct,
			100 * c / hz / w, other, ok ? sprintf("%.1f", 1e6 * c / hz / ok) : "NA",
			sys }')
	if ((round == 0)); then
		echo "# warm-up, not counted: $line" >&2
		return
	fi
	echo "$line" | tee -a "$RESULTS"
	local col
	read -ra col <<<"$line" # other% us/call sys% are the 9th to 11th columns
	note_busy "${col[8]}"
	US_AT[$name@$rate]+=" ${col[9]}"
	SYS_AT[$name@$rate]+=" ${col[10]}"
}

SERVERS=()
if [[ "$SKIP_KAMAILIO" != 1 ]]; then
	sed -e "s/@IP@/$IP/g" -e "s/@PORT@/$KAM_PORT/g" -e "s/@UAS_PORT@/$UAS_PORT/g" "$HERE/kamailio.cfg.tmpl" >"$RUN/kamailio.cfg"
	spawn "$RUN/kamailio.log" "$SERVER_MAX_SECS" "$KAMAILIO_BIN" -f "$RUN/kamailio.cfg" -m "$KAM_SHM_MB" -M 16 -x "$KAM_MEM" -DD -E -P "$RUN/kamailio.pid" -w "$RUN"
	KPG=$SPAWNED_PID
	wait_options "$KAM_PORT" || { cat "$RUN/kamailio.log" >&2; die "Kamailio did not start"; }
	SERVERS+=("kamailio $KAM_PORT $KPG 0")
fi

if [[ "$SKIP_SWITCHBOARD" != 1 ]]; then
	read -r MD5 SHA < <(python3 -c 'import hashlib; s="2000:bench.test:bench-2000".encode(); print(hashlib.md5(s).hexdigest(), hashlib.sha256(s).hexdigest())')
	cat >"$RUN/switchboard.yaml" <<YAML
format: 1
hash: ""
domains:
  - domain: bench.test
    site: bench/site
    extensions: "1000-2999"
    trustedPeers: ["127.0.0.0/8"]
    registration:
      minExpires: 60
      maxExpires: 3600
      defaultExpires: 3600
      maxContacts: 1
      transports: [UDP]
      digestAlgorithms: [MD5]
    devices:
      - id: bench/callee
        sipUser: "2000"
        ha1Md5: $MD5
        ha1Sha256: $SHA
        assignment: Site
        extension: "2000"
YAML
	spawn "$RUN/switchboard.log" "$SERVER_MAX_SECS" env RUST_LOG=warn "$REGISTRAR_BIN" --config "$RUN/switchboard.yaml" \
		--udp "$IP:$OUR_PORT" --tcp "$IP:$OUR_PORT" --http "$IP:$OUR_HTTP" --replica bench
	SPG=$SPAWNED_PID
	wait_options "$OUR_PORT" || { cat "$RUN/switchboard.log" >&2; die "Switchboard did not start"; }
	SERVERS+=("switchboard $OUR_PORT $SPG 1")
fi

if ((WARMUP > 0)); then
	for server in "${SERVERS[@]}"; do
		# shellcheck disable=SC2086 # name port pgid register
		run_once $server "${RATES%% *}" 0 "$WARMUP" || exit 1
	done
fi

# Round by round, rate by rate, server after server.
for round in $(seq 1 "$ROUNDS"); do
	for rate in $RATES; do
		for server in "${SERVERS[@]}"; do
			# shellcheck disable=SC2086 # name port pgid register
			run_once $server "$rate" "$round" || exit 1
		done
	done
done

echo
awk -v maxf="$MAX_FAIL_PCT" 'NR > 1 && $7 < maxf { if ($4 > best[$1]) best[$1] = $4 }
	END {
		for (s in best) printf "best %-12s %8.0f calls/s\n", s, best[s]
		if (best["kamailio"] > 0 && best["switchboard"] > 0)
			printf "ratio switchboard/kamailio: %.2f\n", best["switchboard"] / best["kamailio"]
	}' "$RESULTS"

# CPU per call at equal target rates, the comparison that holds on a busy machine.
echo
echo "== server CPU per call (us, median over $ROUNDS round(s)) at each target rate, and the ratio switchboard / kamailio"
# shellcheck disable=SC2086 # median takes one word per round
for rate in $RATES; do
	k=${US_AT[kamailio@$rate]:-} s=${US_AT[switchboard@$rate]:-}
	line=$(printf '  %6d' "$rate")
	[[ -n "$k" ]] && line+=$(printf '  kamailio %7s' "$(median $k)")
	[[ -n "$s" ]] && line+=$(printf '  switchboard %7s' "$(median $s)")
	if [[ -n "$k" && -n "$s" ]]; then
		ratios=$(paste -d' ' <(tr ' ' '\n' <<<"${k# }") <(tr ' ' '\n' <<<"${s# }") |
			awk '$1 != "NA" && $2 != "NA" && $1 > 0 { printf " %.2f", $2 / $1 }')
		line+=$(awk -v k="$(median $k)" -v s="$(median $s)" 'BEGIN { if (k + 0 > 0 && s + 0 > 0) printf "  (ratio %.2f)", s / k }')
		[[ -n "$ratios" ]] && line+="  round by round:$ratios (median $(median $ratios))"
	fi
	echo "$line"
done
echo "== the kernel's share of the server's CPU (system time, %, median over the rounds)"
# shellcheck disable=SC2086 # median takes one word per round
for rate in $RATES; do
	line=$(printf '  %6d' "$rate")
	for name in kamailio switchboard; do
		[[ -n "${SYS_AT[$name@$rate]:-}" ]] && line+=$(printf '  %s %5s' "$name" "$(median ${SYS_AT[$name@$rate]})")
	done
	echo "$line"
done
busy_warning
