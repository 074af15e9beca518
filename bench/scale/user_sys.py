#!/usr/bin/env python3
"""Splits each registrar's CPU time into user and system time while a benchmark runs.

Usage: user_sys.py BINARY OUT [SECONDS]

Every 0.2 s reads utime and stime (/proc/PID/stat) of every process whose executable is
BINARY (an absolute path), for SECONDS (default 3600). Only the intervals during which sipp
ran throughout count (run.sh's own window: the load), so start-up (the config load) and idle
time are left out. When a process ends, appends "PID user U sys S sys% P" (seconds) to OUT. Start it, then
run bench/scale/run.sh with REGISTRAR_BIN=BINARY: the lines come in the order of the cases
(memory-1, redis-1, ... round by round). run.sh's reg_us is the sum of the two.
"""

import os
import sys
import time

INTERVAL = 0.2


def registrars(binary):
    """(pid, utime, stime) in clock ticks of every process running BINARY."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/exe") != binary:
                continue
            with open(f"/proc/{pid}/stat") as f:
                # The fields after the command's closing parenthesis; utime, stime are 14, 15.
                fields = f.read().rsplit(")", 1)[1].split()
            yield int(pid), int(fields[11]), int(fields[12])
        except OSError:
            continue  # ended meanwhile, or not ours to read


def sipp_running():
    """Whether a sipp process runs."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "sipp":
                    return True
        except OSError:
            continue
    return False


def main():
    binary, out = sys.argv[1], sys.argv[2]
    deadline = time.monotonic() + (float(sys.argv[3]) if len(sys.argv) > 3 else 3600)
    hz = os.sysconf("SC_CLK_TCK")
    last, busy = {}, {}
    loaded_before = False
    while time.monotonic() < deadline:
        loaded = sipp_running()
        seen = set()
        for pid, user, system in registrars(binary):
            seen.add(pid)
            if pid in last and loaded and loaded_before:
                total = busy.setdefault(pid, [0, 0])
                total[0] += user - last[pid][0]
                total[1] += system - last[pid][1]
            last[pid] = (user, system)
        for pid in [p for p in last if p not in seen]:
            del last[pid]
            if pid in busy:
                user, system = busy.pop(pid)
                with open(out, "a") as f:
                    f.write(
                        f"{pid} user {user / hz:.2f} sys {system / hz:.2f} "
                        f"sys% {100 * system / max(user + system, 1):.1f}\n"
                    )
        loaded_before = loaded
        time.sleep(INTERVAL)


if __name__ == "__main__":
    main()
