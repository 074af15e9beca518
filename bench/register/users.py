#!/usr/bin/env python3
"""Generate benchmark SIP users for the REGISTER benchmark.

Usage:
    users.py --out DIR [--count N] [--realm bench.test] [--seed S] [--prefix user]

Writes into DIR:
  users.tsv      user<TAB>password<TAB>ha1_md5<TAB>ha1_sha256   (one line per user, no header)
                 ha1_md5    = hex(md5("user:realm:password"))
                 ha1_sha256 = hex(sha256("user:realm:password"))   (RFC 7616 / RFC 8760)
                 This is the neutral format: convert it into any registrar's config.
  users.csv      sipp injection file (SEQUENTIAL): field0 = user, field1 = password,
                 field2 = "[authentication username=USER password=PASSWORD]" (sipp 3.6.1 cannot
                 nest [field0] inside [authentication ...], but expands a keyword held in a field)
  dbtext/htable  Kamailio db_text table for the htable module (key = user, value = HA1 MD5)
  dbtext/version db_text version table (htable version 2)

Users are named PREFIX00000, PREFIX00001, ... (zero padded to at least 5 digits).
Passwords are 16 letters/digits, starting with a letter (sipp 3.6.1 treats a password that
starts with "0x" as hex and would answer the challenge wrongly), pseudo-random but deterministic for a given --seed, so two runs (and two
servers fed from the same DIR) agree.
"""

import argparse
import hashlib
import os
import random
import string
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (created if missing)")
    ap.add_argument("--count", type=int, default=10000, help="number of users (default 10000)")
    ap.add_argument("--realm", default="bench.test", help="digest realm (default bench.test)")
    ap.add_argument("--seed", default="switchboard-bench", help="seed for the passwords")
    ap.add_argument("--prefix", default="user", help="user name prefix (default 'user')")
    args = ap.parse_args()

    if args.count < 1:
        print("users.py: --count must be >= 1", file=sys.stderr)
        return 2

    width = max(5, len(str(args.count - 1)))
    rng = random.Random(args.seed)
    alphabet = string.ascii_letters + string.digits

    os.makedirs(os.path.join(args.out, "dbtext"), exist_ok=True)
    tsv_lines = []
    csv_lines = ["SEQUENTIAL"]
    ht_lines = ["id(int,auto) key_name(string) key_type(int) value_type(int) key_value(string) expires(int) "]
    for i in range(args.count):
        user = f"{args.prefix}{i:0{width}d}"
        # First character a letter: sipp decodes a password starting with "0x" as hex.
        password = rng.choice(string.ascii_letters) + "".join(rng.choice(alphabet) for _ in range(15))
        a1 = f"{user}:{args.realm}:{password}".encode()
        ha1_md5 = hashlib.md5(a1).hexdigest()
        ha1_sha256 = hashlib.sha256(a1).hexdigest()
        tsv_lines.append(f"{user}\t{password}\t{ha1_md5}\t{ha1_sha256}")
        csv_lines.append(f"{user};{password};[authentication username={user} password={password}]")
        # key_type 0 = single value, value_type 0 = string
        ht_lines.append(f"{i + 1}:{user}:0:0:{ha1_md5}:0")

    def write(name: str, lines: list) -> None:
        path = os.path.join(args.out, name)
        with open(path + ".tmp", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(path + ".tmp", path)

    write("users.tsv", tsv_lines)
    write("users.csv", csv_lines)
    write(os.path.join("dbtext", "htable"), ht_lines)
    write(os.path.join("dbtext", "version"), [
        "id(int,auto) table_name(string) table_version(int) ",
        "1:htable:2",
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
