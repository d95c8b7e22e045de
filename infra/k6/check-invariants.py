#!/usr/bin/env python3
"""After a load run: the contract's invariants, read from Redis, MariaDB and the admin API.

    check-invariants.py --event E [--summary summary.json] [--stock-samples FILE] [--remote]

Environment: ORIGIN_URL, ADMIN_TOKEN, REDIS_PORT, MYSQL_PORT (a stack's env file),
KEY_PREFIX (default fg:), DRAIN_S (how long to wait for pending orders, default 60).
--remote (a deployed stack): only the admin stats, no Redis or MariaDB; the checks that
need the orders table or Redis' order marks are left out and `confirmed` stands for the
rows. Exits 1 when any invariant breaks, 2 when it cannot read what it needs.

What it checks, for the run's event:
- stock never below zero (the final value, and every sample taken during the run);
- no unit created or lost: stock_left == stock_total - reserved + compensated;
- every reservation reaches the database: pending drains to 0 and
  rows == confirmed, rows + failed == reserved;
- the orders table and Redis agree user by user, and no (event, user) appears twice;
- orders == min(stock, buyers), from the k6 summary's buyer counters: every 202 the
  shoppers saw is one reservation, and a crowd that got definite answers was sold
  exactly what there was.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request


def die(msg):
    print(f"check-invariants: {msg}", file=sys.stderr)
    sys.exit(2)


def need(name):
    value = os.environ.get(name)
    if not value:
        die(f"{name} is not set (source the stack's env file)")
    return value


def redis(*args):
    out = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", need("REDIS_PORT"), "--no-raw", *args],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    return out


def redis_raw(*args):
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", need("REDIS_PORT"), "--raw", *args],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout


def sql(query):
    out = subprocess.run(
        ["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{need('MYSQL_PORT')}", "-uroot",
         "-N", "-B", "flashgate", "-e", query],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def stats(event):
    req = urllib.request.Request(
        f"{need('ORIGIN_URL')}/admin/events/{event}/stats",
        headers={"authorization": f"Bearer {need('ADMIN_TOKEN')}"},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


def summary_counts(path):
    with open(path, encoding="utf-8") as f:
        metrics = json.load(f).get("metrics", {})

    def count(name):
        m = metrics.get(name) or {}
        return int(m.get("count", m.get("passes", 0)) or 0)

    return {
        "buyers": count("fg_buyers"),
        "resolved": count("fg_buyers_resolved"),
        "queued": count("fg_purchase_queued"),
        "already": count("fg_purchase_already"),
        "sold_out": count("fg_purchase_sold_out"),
        "busy": count("fg_purchase_busy"),
        "transport": count("fg_transport_error"),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--event", required=True)
    ap.add_argument("--summary")
    ap.add_argument("--stock-samples")
    ap.add_argument("--remote", action="store_true", help="admin stats only")
    args = ap.parse_args()
    prefix = os.environ.get("KEY_PREFIX", "fg:")
    base = f"{prefix}{{{args.event}}}"
    results = []

    def ok(name, passed, detail):
        results.append((name, bool(passed), detail))

    try:
        deadline = time.monotonic() + float(os.environ.get("DRAIN_S", "60"))
        s = stats(args.event)
        while s["pending"] > 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            s = stats(args.event)
        if args.remote:
            stock_left, stock_total = int(s["stock_left"]), int(s["stock_total"])
            reserved, confirmed = int(s["reserved"]), int(s["confirmed"])
            failed, compensated = int(s["failed"]), int(s["compensated"])
            rows = marks = dups = None
        else:
            stock_left = int(redis_raw("GET", f"{base}:stock").strip())
            stock_total = int(redis_raw("HGET", f"{base}:info", "stock_total").strip())
            counters = dict(zip(*[iter(redis_raw("HGETALL", f"{base}:stats").splitlines())] * 2))
            reserved = int(counters.get("reserved", 0))
            confirmed = int(counters.get("confirmed", 0))
            failed = int(counters.get("failed", 0))
            compensated = int(counters.get("compensated", 0))
            marks_flat = redis_raw("HGETALL", f"{base}:orders").splitlines()
            marks = dict(zip(marks_flat[0::2], marks_flat[1::2]))
            rows = sql(f"SELECT user_id, order_id, status FROM orders WHERE event_id = '{args.event}'")
            dups = sql(
                f"SELECT user_id, COUNT(*) FROM orders WHERE event_id = '{args.event}' "
                "GROUP BY user_id HAVING COUNT(*) > 1"
            )
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
        die(f"reading the state of event {args.event}: {e}")
    # Orders in the database: the table's rows, or remotely the consumer's count of them.
    orders = confirmed if rows is None else len(rows)

    ok("stock never below zero (final)", stock_left >= 0, f"stock_left={stock_left}")
    if args.stock_samples and os.path.exists(args.stock_samples):
        with open(args.stock_samples, encoding="utf-8") as f:
            samples = [int(x) for x in f.read().split() if x.lstrip("-").isdigit()]
        if samples:
            ok("stock never below zero (sampled during the run)", min(samples) >= 0,
               f"{len(samples)} samples, min={min(samples)}")
    ok("no unit created or lost", stock_left == stock_total - reserved + compensated,
       f"stock_left={stock_left} total={stock_total} reserved={reserved} compensated={compensated}")
    ok("never oversold", reserved - compensated <= stock_total and orders <= stock_total,
       f"held={reserved - compensated} rows={orders} stock={stock_total}")
    ok("every reservation decided (pending drained)", s["pending"] == 0, f"pending={s['pending']}")
    if rows is None:
        ok("confirmed + failed == reserved", confirmed + failed == reserved,
           f"confirmed={confirmed} failed={failed} reserved={reserved}")
    else:
        ok("rows == confirmed, rows + failed == reserved",
           len(rows) == confirmed and len(rows) + failed == reserved,
           f"rows={len(rows)} confirmed={confirmed} failed={failed} reserved={reserved}")
        ok("no duplicate (event, user) rows", not dups, f"{len(dups)} users with more than one row")
        db_marks = {u: o for u, o, _ in rows}
        ok("orders table == Redis order marks", db_marks == marks,
           f"db={len(db_marks)} redis={len(marks)} differ={len(set(db_marks.items()) ^ set(marks.items()))}")
        ok("every row confirmed", all(st == "confirmed" for _, _, st in rows),
           f"statuses={sorted({st for _, _, st in rows})}")

    if args.summary:
        try:
            k = summary_counts(args.summary)
        except (OSError, ValueError) as e:
            die(f"reading {args.summary}: {e}")
        unknown = k["busy"] + k["transport"]
        ok("each 202 is one reservation", k["queued"] <= reserved <= k["queued"] + unknown,
           f"202s={k['queued']} reserved={reserved} busy/transport={unknown}")
        # A buyer without a definite answer gave up on 429/503, or the scenario's time
        # limit cut its iteration short: its order may or may not exist.
        unresolved = k["buyers"] - k["resolved"]
        if unresolved == 0 and failed == 0:
            want = min(stock_total, k["buyers"])
            ok("orders == min(stock, buyers)", reserved == want and orders == want,
               f"rows={orders} reserved={reserved} stock={stock_total} buyers={k['buyers']}")
        else:
            lo = min(stock_total, k["resolved"]) - failed
            hi = min(stock_total, k["buyers"])
            ok("min(stock, resolved) <= orders <= min(stock, buyers)", lo <= orders <= hi,
               f"rows={orders} in [{lo}, {hi}], {unresolved} buyers unresolved, {failed} failed")
        if k["sold_out"] > 0:
            ok("sold out means no stock was left", reserved - compensated == stock_total,
               f"409s={k['sold_out']} held={reserved - compensated} stock={stock_total}")

    width = max(len(n) for n, _, _ in results)
    print(f"invariants of event {args.event}:")
    for name, passed, detail in results:
        print(f"  {'ok  ' if passed else 'FAIL'} {name.ljust(width)}  {detail}")
    failed_checks = [n for n, p, _ in results if not p]
    if failed_checks:
        print(f"check-invariants: {len(failed_checks)} invariant(s) broken", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
