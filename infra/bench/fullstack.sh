#!/usr/bin/env bash
# k6 through the edge: page floor, event info, mixed scenario with invariants, HTML report
#
# The whole stack (wrangler dev on the built worker, release origin and consumer, Redis,
# MariaDB, broker) under k6:
#   1. GET / (a static asset of the edge, no worker code)   the edge floor
#   2. GET /api/events/E (worker -> signed origin call)     against that floor
#      both closed loop, FS_VUS (50) virtual users for FS_SECONDS (10) each;
#   3. the mixed scenario (infra/k6/mixed.js): 0 -> FS_PEAK_VUS (100) -> 0 over
#      FS_RAMP_UP/FS_HOLD/FS_RAMP_DOWN (10s/30s/10s), think time 1 s, FS_STOCK (500)
#      units, then the invariants in Redis and MariaDB; k6's HTML dashboard of this run
#      goes to target/bench/k6-report.html. A failed k6 threshold is a figure that missed
#      its target (met: NO); a broken invariant, or a run that could not check them, fails
#      the suite.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/infra/bench/lib.sh"

VUS=${FS_VUS:-50}
SECS=${FS_SECONDS:-10}
bench_start_origin
bench_start_consumer
[ -f "$ROOT/edge/build/index.js" ] || bash "$ROOT/infra/edge/build.sh" >"$DIR/logs/edge-build.log" 2>&1 \
  || { tail -20 "$DIR/logs/edge-build.log" >&2; die "edge build failed"; }
bench_start_edge

stamp=$(date +%s)
info=bench-info-$stamp
bench_put_event "$info" 1000 -5 86400
sleep 1

throughput() { # name path
  "$K6" run --quiet --no-color -e EDGE_URL="$EDGE_URL" -e VUS="$VUS" -e DURATION="${SECS}s" \
    -e TARGET_PATH="$2" --summary-export "$BENCH_OUT/fullstack-$1.json" "$ROOT/infra/k6/throughput.js" \
    >"$DIR/logs/k6-$1.log" 2>&1 || { tail -20 "$DIR/logs/k6-$1.log" >&2; die "k6 $1 failed"; }
  say "fullstack $1: $(json_get "$BENCH_OUT/fullstack-$1.json" metrics.http_reqs.rate) rps"
}
throughput page /
throughput event "/api/events/$info"

mixed_status=0
rm -f "$BENCH_OUT/k6-report.html"
K6_WEB_DASHBOARD=true K6_WEB_DASHBOARD_EXPORT="$BENCH_OUT/k6-report.html" \
  PEAK_VUS=${FS_PEAK_VUS:-100} RAMP_UP=${FS_RAMP_UP:-10s} HOLD=${FS_HOLD:-30s} \
  RAMP_DOWN=${FS_RAMP_DOWN:-10s} STOCK=${FS_STOCK:-500} USERS=${FS_USERS:-20000} \
  bash "$ROOT/infra/k6/run.sh" mixed --out "$DIR/k6-mixed" >"$DIR/logs/k6-mixed.out" 2>&1 || mixed_status=$?
cat "$DIR/logs/k6-mixed.out" >&2
[ -f "$DIR/k6-mixed/summary.json" ] || die "the mixed run left no summary"
cp "$DIR/k6-mixed/summary.json" "$BENCH_OUT/fullstack-mixed.json"
broken=$(grep -c '^  FAIL' "$DIR/logs/k6-mixed.out" || true)
# An invariant check that did not run counts as broken: no proof, no pass.
grep -q '^invariants of event' "$DIR/logs/k6-mixed.out" || broken=$((broken + 1))
thresholds_failed=$(grep -cE "^ +✗ '" "$DIR/logs/k6-mixed.out" || true)
grep -B1 -E "^ +✗ '" "$DIR/logs/k6-mixed.out" | grep -vE '^--$' | sed 's/^ *//' | paste -sd' ' >"$DIR/failed-thresholds.txt" || true
[ -f "$BENCH_OUT/k6-report.html" ] || say "k6 wrote no HTML report"

python3 - "$BENCH_OUT" "$broken" "$thresholds_failed" "${FS_PEAK_VUS:-100}" "$DIR/failed-thresholds.txt" \
  <<'PY' >"$DIR/fullstack-rows.txt"
import json, sys
out, broken, failed, peak = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
m = lambda n: json.load(open(f"{out}/fullstack-{n}.json"))["metrics"]
page, event, mixed = m("page"), m("event"), m("mixed")
rate = lambda x: x["http_reqs"]["rate"]
p99 = lambda x, k="http_req_duration": x.get(k, {}).get("p(99)")
cnt = lambda k: int(mixed.get(k, {}).get("count", 0))
opt = lambda v: "" if v is None else f"{v:.1f}"  # no such request: no figure, not a zero
rows = [
    ("fullstack page rps (static asset floor)", f"{rate(page):.0f}", "rps", "", ""),
    ("fullstack event info rps (worker + origin)", f"{rate(event):.0f}", "rps", f"{rate(page):.0f}", ""),
    ("fullstack event info p99", f"{p99(event):.1f}", "ms", f"{p99(page):.1f}", ""),
    (f"fullstack mixed requests/s (peak {peak} VUs)", f"{rate(mixed):.0f}", "rps", "", ""),
    ("fullstack mixed admitted purchase p99", opt(p99(mixed, "fg_purchase_admitted")), "ms",
     opt(p99(mixed, "fg_latency_page")), "<1000"),
    ("fullstack mixed k6 thresholds failed", str(failed), "count", "", "<1"),
    ("fullstack mixed invariants broken", str(broken), "count", "", "<1"),
]
for r in rows:
    print("|".join(r))
notes = [
    "### fullstack",
    "",
    f"- mixed run: {cnt('fg_buyers')} buyers, {cnt('fg_purchase_queued')} × 202, {cnt('fg_purchase_sold_out')} × 409, "
    f"{cnt('fg_purchase_rate_limited')} × 429, {cnt('fg_purchase_busy')} × 503, {int(mixed['iterations']['count'])} iterations, "
    f"{int(mixed['http_reqs']['count'])} requests",
    f"- order confirmed after 202 (p50/p99 ms): {mixed.get('fg_order_confirm', {}).get('med', 0):.0f} / "
    f"{mixed.get('fg_order_confirm', {}).get('p(99)', 0):.0f}",
    f"- latency p99 by request (ms): " + ", ".join(
        f"{k[len('fg_latency_'):]} {v['p(99)']:.0f}" for k, v in sorted(mixed.items()) if k.startswith("fg_latency_")),
    f"- thresholds failed: {failed}" + (f" ({open(sys.argv[5]).read().strip()})" if failed else "")
    + f"; invariants broken: {broken}",
    "- k6 HTML dashboard of the mixed run: target/bench/k6-report.html",
    "",
]
open(f"{out}/notes-fullstack.md", "w").write("\n".join(notes) + "\n")
PY
while IFS='|' read -r name value unit floor target; do
  bench_record "$name" "$value" "$unit" "$floor" "$target"
done <"$DIR/fullstack-rows.txt"
if [ "$broken" -gt 0 ]; then die "the mixed run broke invariants or could not check them (exit $mixed_status)"; fi
