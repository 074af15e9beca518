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
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-eval}"
RATES="${RATES:-5000 10000 15000 20000 25000 30000 40000}"
IMPLS="${IMPLS:-raw stack}"
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

printf '%-6s %7s %8s %10s %8s %8s %9s %8s %6s %8s\n' impl target calls ok/s ok failed retrans srvCPU% RSSMB sippCPU% | tee "$OUT/summary.txt"
port=$BASE_PORT
for impl in $IMPLS; do
  best=0
  for rate in $RATES; do
    port=$((port + 1))
    calls=$((rate * SECS)); (( calls > MAX_CALLS )) && calls=$MAX_CALLS
    run="$OUT/$impl-$rate"; mkdir -p "$run"
    PORT=$port WORKERS=$WORKERS "$CARGO_TARGET_DIR/release/$impl" >"$run/server.log" 2>&1 &
    spid=$!
    for _ in $(seq 50); do ss -Hlun "sport = :$port" | grep -q . && break; sleep 0.1; done
    c0=$(cpu_ticks $spid); t0=$(date +%s.%N)
    # -l: at most ~1 s of calls in flight; -recv_timeout: a call fails if an answer is >3 s late.
    rc=0
    TIMEFORMAT="%R %U %S"
    { time (cd "$run" && timeout $((calls / rate + 40)) sipp "127.0.0.1:$port" -i 127.0.0.1 -p $((SIPP_PORT + port - BASE_PORT)) \
        -sf "$HERE/register.xml" -inf "$HERE/users.csv" \
        -r "$rate" -m "$calls" -l "$rate" -buff_size 4194304 -recv_timeout 3000 \
        -trace_stat -stf stat.csv -fd 1 -trace_err -error_file errors.log -nostdin \
        >sipp.out 2>&1) ; } 2>"$run/sipp_time.txt" || rc=$?
    t1=$(date +%s.%N); c1=$(cpu_ticks $spid); rss=$(hwm_kb $spid)
    kill -INT $spid 2>/dev/null || true; wait $spid 2>/dev/null || true
    line=$(python3 - "$run/stat.csv" "$c0" "$c1" "$t0" "$t1" "$TCK" "$rss" "$run/sipp_time.txt" <<'PY'
import sys, csv
path, c0, c1, t0, t1, tck, rss, st = sys.argv[1:]
real, usr, sys_ = (float(x) for x in open(st).read().split()[-3:])
rows = list(csv.reader(open(path), delimiter=';'))
h, last = rows[0], rows[-1]
v = dict(zip(h, last))
ok, failed = int(v['SuccessfulCall(C)']), int(v['FailedCall(C)'])
start = float(v['StartTime'].split()[-1]); cur = float(v['CurrentTime'].split()[-1])
el = max(cur - start, 1e-3)
cpu = (float(c1) - float(c0)) / float(tck) / max(float(t1) - float(t0), 1e-3) * 100
print(ok, failed, v['Retransmissions(C)'], f"{ok/el:.0f}", f"{cpu:.0f}", f"{int(rss)/1024:.0f}", f"{(usr+sys_)/max(real,1e-3)*100:.0f}")
PY
) || line="0 0 0 0 0 0 0"
    read -r ok failed retr okps cpu rssmb sippcpu <<<"$line"
    printf '%-6s %7d %8d %10s %8d %8d %9s %8s %6s %8s\n' "$impl" "$rate" "$calls" "$okps" "$ok" "$failed" "$retr" "$cpu" "$rssmb" "$sippcpu" | tee -a "$OUT/summary.txt"
    total=$((ok + failed))
    # sustained: <1% failed and >=95% of the target rate actually achieved
    if (( total > 0 )) && (( failed * 100 < total )) && (( okps * 100 >= rate * 95 )); then
      best=$rate
    else
      echo "  -> $impl saturated at $rate/s (sipp rc=$rc); stopping its ramp" | tee -a "$OUT/summary.txt"
      break
    fi
  done
  echo "SATURATION $impl: highest sustained rate = $best reg/s (<1% failures, >=95% of target)" | tee -a "$OUT/summary.txt"
done
echo "per-run logs in $OUT"
