#!/usr/bin/env bash
# the original k6 plan at full size (0 -> 2,000 -> 0 VUs, 1/5/1 min), k6 as the edge against the origin
#
# The seed's plan (infra/k6/mixed.js --full: ramping 0 -> PLAN_PEAK_VUS (2000) -> 0 VUs
# over 1 min / 5 min / 1 min, 1 s think time, 90 % browse, 10 % buy with distinct users,
# PLAN_STOCK (1000) units) with k6 playing the edge (AS_EDGE=1: every request signed as
# core/src/sign.rs signs it, sent to the release origin directly; the page, its assets and
# tickets are the edge's and left out), the release consumer writing the orders, then the
# invariants in Redis and MariaDB. `wrangler dev`, the local stand-in for the edge, tops out
# at a few hundred requests/s on this machine, so this is how the origin side meets the
# original scale here. PLAN_THROUGH_EDGE=1 runs the same plan through `wrangler dev` after
# it (7 more minutes). PLAN_RAMP_UP/PLAN_HOLD/PLAN_RAMP_DOWN (1m/5m/1m) shorten the stages.
# A failed k6 threshold is a figure that missed its target; a broken invariant fails the
# suite. Runs only in ./dev bench (never in ./dev test): about 8 minutes per run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/infra/bench/lib.sh"

PEAK=${PLAN_PEAK_VUS:-2000}
bench_start_origin
bench_start_consumer

# One run of the plan: name (as-edge|edge), extra environment for run.sh.
plan() { # name env...
  local name=$1 status=0; shift
  say "plan $name: 0 -> $PEAK -> 0 VUs over ${PLAN_RAMP_UP:-1m} / ${PLAN_HOLD:-5m} / ${PLAN_RAMP_DOWN:-1m}"
  env "$@" PEAK_VUS="$PEAK" RAMP_UP="${PLAN_RAMP_UP:-1m}" HOLD="${PLAN_HOLD:-5m}" \
    RAMP_DOWN="${PLAN_RAMP_DOWN:-1m}" STOCK="${PLAN_STOCK:-1000}" USERS="${PLAN_USERS:-60000}" \
    bash "$ROOT/infra/k6/run.sh" mixed --out "$DIR/k6-plan-$name" >"$DIR/logs/k6-plan-$name.out" 2>&1 || status=$?
  tail -60 "$DIR/logs/k6-plan-$name.out" >&2
  [ -f "$DIR/k6-plan-$name/summary.json" ] || die "the plan ($name) left no summary"
  cp "$DIR/k6-plan-$name/summary.json" "$BENCH_OUT/plan-$name.json"
  local broken failed
  broken=$(grep -c '^  FAIL' "$DIR/logs/k6-plan-$name.out" || true)
  # An invariant check that did not run counts as broken: no proof, no pass.
  grep -q '^invariants of event' "$DIR/logs/k6-plan-$name.out" || broken=$((broken + 1))
  failed=$(grep -cE "^ +✗ '" "$DIR/logs/k6-plan-$name.out" || true)
  grep -B1 -E "^ +✗ '" "$DIR/logs/k6-plan-$name.out" | grep -vE '^--$' | sed 's/^ *//' | paste -sd' ' \
    >"$BENCH_OUT/plan-$name-failed.txt" || true
  echo "$broken $failed $status" >"$BENCH_OUT/plan-$name-status.txt"
}

plan as-edge AS_EDGE=1
if [ -n "${PLAN_THROUGH_EDGE:-}" ]; then
  [ -f "$ROOT/edge/build/index.js" ] || bash "$ROOT/infra/edge/build.sh" >"$DIR/logs/edge-build.log" 2>&1 \
    || { tail -20 "$DIR/logs/edge-build.log" >&2; die "edge build failed"; }
  bench_start_edge
  plan edge
fi

python3 - "$BENCH_OUT" "$PEAK" <<'PY' >"$DIR/plan-rows.txt"
import json, os, sys
out, peak = sys.argv[1], sys.argv[2]
rows, notes = [], ["### plan (the original k6 plan at full size)", ""]
for name, what in (("as-edge", "k6 as the edge, to the origin"), ("edge", "through wrangler dev")):
    if not os.path.exists(f"{out}/plan-{name}.json"):
        continue
    m = json.load(open(f"{out}/plan-{name}.json"))["metrics"]
    broken, failed, status = map(int, open(f"{out}/plan-{name}-status.txt").read().split())
    cnt = lambda k: int(m.get(k, {}).get("count", 0))
    p99 = m.get("fg_purchase_admitted", {}).get("p(99)")
    rows += [
        (f"plan requests/s ({what}, peak {peak} VUs)", f"{m['http_reqs']['rate']:.0f}", "rps", "", ""),
        (f"plan admitted purchase p99 ({what})", "" if p99 is None else f"{p99:.1f}", "ms", "", "<1000"),
        (f"plan k6 thresholds failed ({what})", str(failed), "count", "", "<1"),
        (f"plan invariants broken ({what})", str(broken), "count", "", "<1"),
    ]
    why = open(f"{out}/plan-{name}-failed.txt").read().strip()
    notes += [
        f"- {what}: {int(m['iterations']['count'])} iterations, {int(m['http_reqs']['count'])} requests "
        f"({m['http_reqs']['rate']:.0f}/s), {cnt('fg_buyers')} buyers: {cnt('fg_purchase_queued')} × 202, "
        f"{cnt('fg_purchase_sold_out')} × 409, {cnt('fg_purchase_rate_limited')} × 429, {cnt('fg_purchase_busy')} × 503; "
        f"transport errors {m.get('fg_transport_error', {}).get('passes', 0)}",
        f"  - latency p99 by request (ms): " + ", ".join(
            f"{k[len('fg_latency_'):]} {v['p(99)']:.0f}" for k, v in sorted(m.items()) if k.startswith("fg_latency_")),
        f"  - thresholds failed: {failed}" + (f" ({why})" if failed else "") + f"; invariants broken: {broken}",
    ]
for r in rows:
    print("|".join(r))
open(f"{out}/notes-plan.md", "w").write("\n".join(notes + [""]) + "\n")
PY
while IFS='|' read -r name value unit floor target; do
  bench_record "$name" "$value" "$unit" "$floor" "$target"
done <"$DIR/plan-rows.txt"
for f in "$BENCH_OUT"/plan-*-status.txt; do
  read -r broken _ _ <"$f"
  [ "$broken" -eq 0 ] || die "the plan broke invariants or could not check them ($(basename "$f" -status.txt))"
done
