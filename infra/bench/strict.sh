#!/usr/bin/env bash
# strict mode's cost: purchase 202/s with no replica wait, with redis_wait_replicas=1, and strict
#
# The stack's Redis gets a replica (AOF on, as the master), then the release
# `flashgate serve` runs in three modes, each for BENCH_SECONDS (10) after BENCH_WARMUP (2)
# of fg-load purchases (new user each, ample stock) on BENCH_STRICT_CONNECTIONS (8)
# connections: without waiting for the replica (the floor), with
# FLASHGATE_REDIS_WAIT_REPLICAS=1 (WAIT after each reserve call, a 202 anyway), and with
# FLASHGATE_REDIS_WAIT_STRICT=true as well (503 busy when no replica acknowledged in time).
# The modes take turns, BENCH_STRICT_ROUNDS (2) times, so that a shared machine's moods
# fall on each alike; a mode's figure is its mean. Each phase has its own event; the relay
# is on in each (in strict mode it WAITs too).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/infra/bench/lib.sh"

SECS=${BENCH_SECONDS:-10}
WARM=${BENCH_WARMUP:-2}
CONN=${BENCH_STRICT_CONNECTIONS:-8}
ROUNDS=${BENCH_STRICT_ROUNDS:-2}
topic=bench.strict.orders
rm -f "$BENCH_OUT"/strict-*

replica_port=$(free_port)
mkdir -p "$DIR/data/redis-strict-replica"
spawn redis-strict-replica "$DIR/data/redis-strict-replica" redis-server --bind 127.0.0.1 \
  --port "$replica_port" --dir "$DIR/data/redis-strict-replica" --appendonly yes --save '' \
  --daemonize no --replicaof 127.0.0.1 "$REDIS_PORT"
trap 'stop_one redis-strict-replica' EXIT
wait_for "the Redis replica" 60 sh -c "redis-cli -p $replica_port info replication | grep -q master_link_status:up"
bench_migrate "FLASHGATE_ORDERS_TOPIC=$topic"

stamp=$(date +%s)
phase() { # name FLASHGATE_*=value...
  local name=$1; shift
  bench_start_origin "FLASHGATE_ORDERS_TOPIC=$topic" "$@"
  bench_put_event "strict-$name-$stamp" 100000000 -5 86400
  "$BENCH_LOAD" --addr "127.0.0.1:$ORIGIN_PORT" --connections "$CONN" --duration "$SECS" \
    --warmup "$WARM" --method POST --body '{}' --sign-env EDGE_SECRET \
    --path "/api/events/strict-$name-$stamp/purchase" --user-prefix "st${stamp}${name}x" \
    >"$BENCH_OUT/strict-$name.json"
  curl -fsS "$ORIGIN_URL/metrics" | grep -E '^flashgate_(reservations_unreplicated|relay_held_back)_total' \
    >"$BENCH_OUT/strict-$name-metrics.txt" || true
  bench_stop serve
  say "strict $name: $(cat "$BENCH_OUT/strict-$name.json")"
}
for round in $(seq 1 "$ROUNDS"); do
  phase "plain-$round"
  phase "wait-$round" FLASHGATE_REDIS_WAIT_REPLICAS=1
  phase "strict-$round" FLASHGATE_REDIS_WAIT_REPLICAS=1 FLASHGATE_REDIS_WAIT_STRICT=true
done

python3 - "$BENCH_OUT" "$ROUNDS" <<'PY' >"$DIR/strict-rows.txt"
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
runs = lambda mode: [json.load(open(f"{out}/strict-{mode}-{r}.json")) for r in range(1, rounds + 1)]
mean = lambda xs: sum(xs) / len(xs)
def merged(mode):
    rs = runs(mode)
    statuses = {}
    for r in rs:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    p99 = [r["by_status"].get("202", {}).get("p99_ms") for r in rs]
    return {"statuses": statuses, "seconds": sum(r["seconds"] for r in rs), "errors": sum(r["errors"] for r in rs),
            "connections": rs[0]["connections"], "p99": None if None in p99 else mean(p99),
            "p50": mean([r["p50_ms"] for r in rs]), "all_p99": mean([r["p99_ms"] for r in rs])}
plain, wait, strict = merged("plain"), merged("wait"), merged("strict")
ok = lambda run, code: run["statuses"].get(code, 0) / run["seconds"]
lat = lambda run, q: "" if run["p99"] is None else f"{run['p99']:.2f}"
print("|".join(["purchase rps (202), no replica wait (floor)", f"{ok(plain, '202'):.0f}", "rps", "", ""]))
print("|".join(["purchase rps (202), redis_wait_replicas=1", f"{ok(wait, '202'):.0f}", "rps", f"{ok(plain, '202'):.0f}", ""]))
print("|".join(["purchase rps (202), strict mode", f"{ok(strict, '202'):.0f}", "rps", f"{ok(plain, '202'):.0f}", ""]))
print("|".join(["strict mode 503s per second (no replica in time)", f"{ok(strict, '503'):.0f}", "rps", "", ""]))
print("|".join(["purchase p99 (202), no replica wait", lat(plain, "p99_ms"), "ms", "", ""]))
print("|".join(["purchase p99 (202), strict mode", lat(strict, "p99_ms"), "ms", lat(plain, "p99_ms"), ""]))
notes = ["### strict", "", f"- fg-load, {plain['connections']} connections, {rounds} rounds of the three modes in turn, "
         f"{plain['seconds'] / rounds:.0f} s each; one replica on the same machine"]
for name, run in (("no wait", plain), ("wait", wait), ("strict", strict)):
    notes.append(f"- {name}: answers {run['statuses']}, errors {run['errors']}, p50 {run['p50']:.2f} ms, p99 {run['all_p99']:.2f} ms (all answers)")
for r in range(1, rounds + 1):
    for name in ("wait", "strict"):
        try:
            notes.append(f"- {name} round {r} metrics: " + " ".join(l.strip() for l in open(f"{out}/strict-{name}-{r}-metrics.txt")))
        except OSError:
            pass
open(f"{out}/notes-strict.md", "w").write("\n".join(notes) + "\n")
PY
while IFS='|' read -r name value unit floor target; do
  bench_record "$name" "$value" "$unit" "$floor" "$target"
done <"$DIR/strict-rows.txt"
