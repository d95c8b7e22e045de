#!/usr/bin/env python3
"""The reserve calls' batch sizes between two scrapes of the origin's /metrics.

    batch_sizes.py BEFORE AFTER  ->  one JSON line

From the histogram `flashgate_reserve_batch_size` (attempts per reserve call): calls,
attempts, their mean, and the calls per bucket (`le` → calls with at most that many
attempts and more than the bucket before). A missing scrape counts as empty.
"""
import json
import re
import sys

LINE = re.compile(r'^flashgate_reserve_batch_size(_bucket|_sum|_count)(?:\{le="([^"]+)"\})? (\S+)$')


def read(path):
    found = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                m = LINE.match(line.strip())
                if m:
                    found[(m.group(1), m.group(2))] = float(m.group(3))
    except OSError:
        pass
    return found


def main():
    before, after = read(sys.argv[1]), read(sys.argv[2])
    delta = {k: v - before.get(k, 0.0) for k, v in after.items()}
    calls = delta.get(("_count", None), 0.0)
    attempts = delta.get(("_sum", None), 0.0)
    edges = sorted((k[1] for k in delta if k[0] == "_bucket"), key=lambda le: float(le))
    buckets, below = {}, 0.0
    for le in edges:
        cumulative = delta[("_bucket", le)]
        buckets[le] = int(round(cumulative - below))
        below = cumulative
    print(json.dumps({"calls": int(calls), "attempts": int(attempts),
                      "mean": round(attempts / calls, 2) if calls else None, "buckets": buckets}))


if __name__ == "__main__":
    main()
