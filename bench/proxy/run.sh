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
# Per server and target rate: sipp runs RATE*DURATION calls at RATE calls/s; printed: target,
# achieved successful calls/s (over the wall time of the sipp run), ok, failed, fail%, server CPU (% of one core over the run) and
# server CPU time per call (us, from /proc/PID/stat of all the server's processes).
# At the end: each server's best rate (highest achieved with < MAX_FAIL_PCT % failures) and the
# ratio Switchboard / Kamailio.
#
# Usage:
#   bench/proxy/run.sh
#   RATES="1000 2000 4000" DURATION=10 bench/proxy/run.sh
#   BUILD=0 SKIP_KAMAILIO=1 bench/proxy/run.sh
# Environment: RATES ("500 1000 2000 3000"), DURATION (10), MAX_FAIL_PCT (1), IP (127.0.0.1),
#   KAM_PORT (26060), OUR_PORT (26070), UAS_PORT (26090), UAC_PORT (26100), BUILD (1: cargo
#   build --release), REGISTRAR_BIN, SKIP_KAMAILIO, SKIP_SWITCHBOARD, KEEP (1: keep the run dir),
#   KAM_SHM_MB (1024: Kamailio shared memory; its 64 MB default runs out of transactions here),
#   KAM_MEM (tlsf: Kamailio memory manager, -x; qm is its debugging-friendly default),
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
REGISTRAR_BIN=${REGISTRAR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/switchboard-registrar}
HZ=$(getconf CLK_TCK)

check_duration_rates
require_tools sipp timeout setsid awk python3
[[ "$SKIP_KAMAILIO" == 1 ]] || require_tools kamailio
[[ "$SKIP_SWITCHBOARD" == 1 ]] || build_registrar "$REPO"

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
printf '%-12s %7s %10s %8s %7s %6s %6s %8s\n' server target achieved/s ok failed fail% srv% us/call | tee "$RESULTS"

run_rates() { # run_rates NAME PORT SERVER_PGID REGISTER(0/1)
	local name=$1 port=$2 pg=$3 reg=$4 rate
	for rate in $RATES; do
		local dir=$RUN/$name-$rate calls=$((rate * DURATION))
		mkdir -p "$dir"
		if [[ "$reg" == 1 ]]; then
			(cd "$dir" && timeout 20 sipp "$IP:$port" -sf "$HERE/register.xml" -m 1 -i "$IP" -p "$UAS_PORT" \
				-key user 2000 -key domain bench.test -au 2000 -ap bench-2000 -nostdin -timeout 10 \
				-timeout_error >register.out 2>&1) || { echo "# $name: REGISTER failed" >&2; cat "$dir/register.out" >&2; return 1; }
		fi
		spawn "$dir/uas.out" $((DURATION * 4 + 30)) sipp -sf "$HERE/uas.xml" -i "$IP" -p "$UAS_PORT" \
			-nostdin
		local uas=$SPAWNED_PID
		sleep 0.3
		local t0 c0 t1 c1
		t0=$(date +%s.%N); c0=$(session_ticks "$pg")
		(cd "$dir" && timeout $((DURATION * 3 + 30)) sipp "$IP:$port" -sf "$HERE/uac.xml" -s 2000 -r "$rate" \
			-m "$calls" -i "$IP" -p "$UAC_PORT" -nostdin -recv_timeout 5000 -timeout $((DURATION * 3 + 20)) \
			-l 100000 >uac.out 2>&1)
		t1=$(date +%s.%N); c1=$(session_ticks "$pg")
		stop_pgid "$uas"
		local ok failed
		ok=$(stat_of "$dir/uac.out" "Successful call")
		failed=$(( calls - ok ))
		awk -v n="$name" -v r="$rate" -v ok="$ok" -v f="$failed" -v c=$((c1 - c0)) -v hz="$HZ" \
			-v w="$(elapsed "$t0" "$t1")" 'BEGIN {
			ach = w > 0 ? ok / w : 0; tot = ok + f; pct = tot ? 100 * f / tot : 100
			printf "%-12s %7d %10.0f %8d %7d %6.2f %6.0f %8.1f\n", n, r, ach, ok, f, pct, 100 * c / hz / w, ok ? 1e6 * c / hz / ok : 0 }' | tee -a "$RESULTS"
	done
}

if [[ "$SKIP_KAMAILIO" != 1 ]]; then
	sed -e "s/@IP@/$IP/g" -e "s/@PORT@/$KAM_PORT/g" -e "s/@UAS_PORT@/$UAS_PORT/g" "$HERE/kamailio.cfg.tmpl" >"$RUN/kamailio.cfg"
	spawn "$RUN/kamailio.log" 3600 kamailio -f "$RUN/kamailio.cfg" -m "$KAM_SHM_MB" -M 16 -x "$KAM_MEM" -DD -E -P "$RUN/kamailio.pid" -w "$RUN"
	KPG=$SPAWNED_PID
	wait_options "$KAM_PORT" || { cat "$RUN/kamailio.log" >&2; die "Kamailio did not start"; }
	run_rates kamailio "$KAM_PORT" "$KPG" 0
	stop_pgid "$KPG"
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
	spawn "$RUN/switchboard.log" 3600 env RUST_LOG=warn "$REGISTRAR_BIN" --config "$RUN/switchboard.yaml" \
		--udp "$IP:$OUR_PORT" --tcp "$IP:$OUR_PORT" --http "$IP:$OUR_HTTP" --replica bench
	SPG=$SPAWNED_PID
	wait_options "$OUR_PORT" || { cat "$RUN/switchboard.log" >&2; die "Switchboard did not start"; }
	run_rates switchboard "$OUR_PORT" "$SPG" 1
fi

echo
awk -v maxf="$MAX_FAIL_PCT" 'NR > 1 && $6 < maxf { if ($3 > best[$1]) best[$1] = $3; us[$1] = $8 }
	END {
		for (s in best) printf "best %-12s %8.0f calls/s\n", s, best[s]
		if (best["kamailio"] > 0 && best["switchboard"] > 0)
			printf "ratio switchboard/kamailio: %.2f\n", best["switchboard"] / best["kamailio"]
	}' "$RESULTS"
