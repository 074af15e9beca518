#!/usr/bin/env bash
# Side-by-side UDP REGISTER+digest load test: `raw` (tokio + rsip 0.4, hand-written)
# vs `stack` (rsipstack 0.7 endpoint/server transactions). Loopback only.
#
#   bench/rsipstack-eval/run.sh                 # default rates, ~3-4 min
#   RATES="5000 10000" IMPLS=raw SECS=5 run.sh  # subset
#   BUILD_TIMES=1 run.sh                        # also time clean release builds
#
# Every sipp run is bounded: -m (= rate * SECS calls, capped at MAX_CALLS) and `timeout`.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# sipp 3.6.1 does not expand [fieldN] inside [authentication], so each line carries the keyword.
if [ ! -s "$HERE/users.csv" ]; then
  { echo SEQUENTIAL; for i in $(seq -w 0 9999); do
      echo "user$i;[authentication username=user$i password=secret]"; done; } > "$HERE/users.csv"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-eval}"
RATES="${RATES:-5000 10000 15000 20000 25000 30000 40000}"
IMPLS="${IMPLS-raw stack}"     # IMPLS="" with BUILD_TIMES=1: build timings only
SECS="${SECS:-10}"            # target duration of each run at its rate
MAX_CALLS="${MAX_CALLS:-200000}"
WORKERS="${WORKERS:-2}"       # tokio worker threads / recv tasks in the servers
OUT="${OUT:-/tmp/rsipstack-eval-results}"
BASE_PORT="${BASE_PORT:-25060}"
SIPP_PORT="${SIPP_PORT:-26060}"

command -v sipp >/dev/null || { echo "sipp not installed (apt-get install sip-tester)"; exit 1; }
rm -rf "$OUT"; mkdir -p "$OUT"
cd "$HERE"

if [[ "${BUILD_TIMES:-0}" == 1 ]]; then
  # Clean release build of each binary in its own throw-away target dir.
  for b in raw stack; do
    t="$OUT/clean-target-$b"; feat=""; [[ $b == stack ]] && feat="--features stack"
    s=$(date +%s.%N)
    CARGO_TARGET_DIR="$t" cargo build -q --release $feat --bin "$b"
    e=$(date +%s.%N)
    printf 'clean release build %-5s %6.1f s\n' "$b" "$(awk -v a="$s" -v b="$e" 'BEGIN{print b-a}')" | tee -a "$OUT/build_times.txt"
    rm -rf "$t"
  done
  for b in raw stack; do
    feat=""; [[ $b == stack ]] && feat="--features stack"
    printf 'cargo tree lines   %-5s %6d\n' "$b" "$(cargo tree -q -e normal $feat | wc -l)" | tee -a "$OUT/build_times.txt"
  done
fi

echo "building (release) into $CARGO_TARGET_DIR ..."
cargo build -q --release --features stack --bins

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
hwm_kb()   { awk '/VmHWM/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
TCK=$(getconf CLK_TCK)
# kernel UDP receive-buffer drops (whole host; sipp's and the server's sockets)
sock_drops() { awk -v p="$(printf ':%04X' "$1")" '$2 ~ p"$" {d+=$NF} END{print d+0}' /proc/net/udp; }
udp_drops() { awk '/^Udp:/{n++; if(n==1){for(i=1;i<=NF;i++) if($i=="RcvbufErrors") c=i} else print $c}' /proc/net/snmp; }

# whole-host busy CPU ticks (all cores), to expose other load on the machine
host_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
# Bounded wait (QUIET_WAIT s) for the host to be idle (>=90% idle over 1 s) before a run;
# other builds on a shared 2-core box otherwise skew the numbers. Prints idle% seen.
wait_quiet() {
  local i idle=0
  for i in $(seq "${QUIET_WAIT:-20}"); do
    local a b ta tb
    read -r a ta < <(awk '/^cpu /{print $5+$6, $2+$3+$4+$5+$6+$7+$8}' /proc/stat); sleep 1
    read -r b tb < <(awk '/^cpu /{print $5+$6, $2+$3+$4+$5+$6+$7+$8}' /proc/stat)
    idle=$(( (b - a) * 100 / (tb - ta + 1) )); (( idle >= 90 )) && break
  done
  echo "$idle"
}

hdr='%-6s %6s %7s %8s %7s %7s %8s %7s %6s %6s %7s %6s %11s\n'
printf "$hdr" impl target calls ok/s ok failed retrans srvCPU% us/reg RSSMB sipCPU% other% drops:srv/all | tee "$OUT/summary.txt"
port=$BASE_PORT
declare -A best alive
for impl in $IMPLS; do best[$impl]=0; alive[$impl]=1; done
# Rate-major: both implementations run back to back at each rate, so slow drift of
# the host's background load hits both alike.
for rate in $RATES; do
  for impl in $IMPLS; do
    (( alive[$impl] )) || continue
    port=$((port + 1))
    calls=$((rate * SECS)); (( calls > MAX_CALLS )) && calls=$MAX_CALLS
    run="$OUT/$impl-$rate"; mkdir -p "$run"
    idle0=$(wait_quiet)
    PORT=$port WORKERS=$WORKERS "$CARGO_TARGET_DIR/release/$impl" >"$run/server.log" 2>&1 &
    spid=$!
    for _ in $(seq 50); do ss -Hlun "sport = :$port" | grep -q . && break; sleep 0.1; done
    c0=$(cpu_ticks $spid); t0=$(date +%s.%N); d0=$(udp_drops); h0=$(host_busy)
    # -l: at most ~1 s of calls in flight; -recv_timeout: a call fails if an answer is >3 s late.
    rc=0
    TIMEFORMAT="%R %U %S"
    { time (cd "$run" && timeout $((calls / rate + 40)) sipp "127.0.0.1:$port" -i 127.0.0.1 -p $((SIPP_PORT + port - BASE_PORT)) \
        -sf "$HERE/register.xml" -inf "$HERE/users.csv" \
        -r "$rate" -m "$calls" -l "$rate" -buff_size 4194304 -recv_timeout 3000 \
        -trace_stat -stf stat.csv -fd 1 -trace_err -error_file errors.log -nostdin \
        >sipp.out 2>&1) ; } 2>"$run/sipp_time.txt" || rc=$?
    t1=$(date +%s.%N); c1=$(cpu_ticks $spid); h1=$(host_busy); rss=$(hwm_kb $spid)
    drops=$(( $(udp_drops) - d0 )); sdrops=$(sock_drops $port)
    kill -INT $spid 2>/dev/null || true; wait $spid 2>/dev/null || true
    line=$(python3 - "$run/stat.csv" "$c0" "$c1" "$t0" "$t1" "$TCK" "$rss" "$run/sipp_time.txt" "$h0" "$h1" <<'PY'
import sys, csv
path, c0, c1, t0, t1, tck, rss, st, h0, h1 = sys.argv[1:]
real, usr, sys_ = (float(x) for x in open(st).read().split()[-3:])
rows = list(csv.reader(open(path), delimiter=';'))
v = dict(zip(rows[0], rows[-1]))
ok, failed = int(v['SuccessfulCall(C)']), int(v['FailedCall(C)'])
start = float(v['StartTime'].split()[-1]); cur = float(v['CurrentTime'].split()[-1])
el = max(cur - start, 1e-3); wall = max(float(t1) - float(t0), 1e-3); tck = float(tck)
srv_s = (float(c1) - float(c0)) / tck
sipp_s = usr + sys_
other = (float(h1) - float(h0)) / tck - srv_s - sipp_s
print(ok, failed, v['Retransmissions(C)'], f"{ok/el:.0f}", f"{srv_s/wall*100:.0f}",
      f"{srv_s*1e6/max(ok,1):.1f}", f"{int(rss)/1024:.0f}", f"{sipp_s/max(real,1e-3)*100:.0f}",
      f"{max(other,0)/wall*100:.0f}")
PY
) || line="0 0 0 0 0 0 0 0 0"
    read -r ok failed retr okps cpu usreg rssmb sippcpu other <<<"$line"
    printf "$hdr" "$impl" "$rate" "$calls" "$okps" "$ok" "$failed" "$retr" "$cpu" "$usreg" "$rssmb" "$sippcpu" "$other" "$sdrops/$drops" | tee -a "$OUT/summary.txt"
    total=$((ok + failed))
    # sustained: <1% failed and >=95% of the target rate actually achieved
    if (( total > 0 )) && (( failed * 100 < total )) && (( okps * 100 >= rate * 95 )); then
      best[$impl]=$rate
    else
      echo "  -> $impl saturated at $rate/s (sipp rc=$rc, host idle before run ${idle0}%)" | tee -a "$OUT/summary.txt"
      alive[$impl]=0
    fi
  done
done
for impl in $IMPLS; do
  echo "SATURATION $impl: highest sustained rate = ${best[$impl]} reg/s (<1% failures, >=95% of target)" | tee -a "$OUT/summary.txt"
done
echo "per-run logs in $OUT"
