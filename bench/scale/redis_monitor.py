#!/usr/bin/env python3
"""Counts the commands a Redis server executes for SECONDS seconds, via MONITOR.

Usage: redis_monitor.py PORT SECONDS OUT

Writes OUT with one line per command name and origin, "origin name count", where origin is
"client" (a command sent by a client: one per round trip, as the registrar does not pipeline
on its REGISTER path) or "lua" (run by a script). MONITOR itself is not counted. Used by
bench/scale/run.sh to report commands and round trips per registration on a short, slow run
(MONITOR costs Redis too much for the throughput runs).
"""

import collections
import re
import select
import socket
import sys
import time

# +1764000000.123456 [0 127.0.0.1:51234] "EVALSHA" "..." / [0 lua] "GET" "..."
LINE = re.compile(r'^\+\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]+)"')


def main():
    port, seconds, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
    buf = b""
    while b"\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("MONITOR: connection closed")
        buf += chunk
    first, buf = buf.split(b"\r\n", 1)
    if first != b"+OK":
        sys.exit("MONITOR refused: %r" % first)
    counts = collections.Counter()
    deadline = time.monotonic() + seconds
    s.setblocking(False)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([s], [], [], 0.2)
        if ready:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
        *lines, buf = buf.split(b"\r\n")
        for line in lines:
            m = LINE.match(line.decode("utf-8", "replace"))
            if m:
                origin = "lua" if m.group(1) == "lua" else "client"
                counts[(origin, m.group(2).upper())] += 1
    with open(out, "w") as o:
        for (origin, name), n in sorted(counts.items()):
            o.write("%s %s %d\n" % (origin, name, n))


if __name__ == "__main__":
    main()
