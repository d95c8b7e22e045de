#!/usr/bin/env python3
"""Turns two reserve calls captured with MONITOR into a redis-benchmark command line.

    redis_floor.py MONITOR_FILE MARKER  ->  one argument per line (EVALSHA sha numkeys keys... args...)

The origin's own EVALSHA calls for two purchases by two users (whose ids contain MARKER)
are compared: what is the same in both stays, what differs (user, order id, signature,
window key) becomes a `__rand_int__` value that redis-benchmark draws anew for every call,
so the floor runs exactly the script and the key layout the origin uses, for a new user
each time. Digit-only arguments that differ (clocks) keep the first call's value, and so
does the replay guard's set, whose name ends with its time slice's end (`…:sigs:<ms>`):
two probes either side of a slice's end name two sets, and a drawn number there would be
no time the script can expire the set by. The exception is the call's deadline (ARGV[6],
see origin/src/redis/lua/reserve.lua), which is moved far into the future: replayed past
it, the script would refuse every call as late.
"""
import re
import sys

QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
SLICE = re.compile(r"(.*:sigs:)\d+")


def calls(path):
    found = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            args = [bytes(a, "utf-8").decode("unicode_escape") for a in QUOTED.findall(line)]
            if args and args[0].upper() in ("EVALSHA", "EVAL"):
                found.append(args)
    return found


def template(a, b):
    if a == b:
        return a
    if a.isdigit() and b.isdigit():
        return a
    slice_a, slice_b = SLICE.fullmatch(a), SLICE.fullmatch(b)
    if slice_a and slice_b and slice_a.group(1) == slice_b.group(1):
        return a
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n] + "__rand_int__"


def main():
    marker = sys.argv[2]
    found = [c for c in calls(sys.argv[1]) if c[0].upper() == "EVALSHA" and any(marker in x for x in c)]
    if len(found) < 2:
        sys.exit("redis_floor: fewer than two EVALSHA calls captured (is the origin calling the script by SHA?)")
    a, b = found[-2], found[-1]
    if len(a) != len(b) or a[1] != b[1]:
        sys.exit("redis_floor: the two captured calls differ in shape")
    args = [template(x, y) for x, y in zip(a, b)]
    # EVALSHA sha numkeys KEYS... ARGV...: ARGV[6] is the deadline.
    deadline = 3 + int(args[2]) + 5
    if not args[deadline].isdigit():
        sys.exit("redis_floor: the captured call has no deadline where reserve.lua expects it")
    args[deadline] = "99999999999999"
    for arg in args:
        print(arg)


if __name__ == "__main__":
    main()
