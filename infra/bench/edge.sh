#!/usr/bin/env bash
# edge worker: wasm size, native admission decision, rejection paths vs the static asset floor
#
#   1. The release wasm (edge/build/index_bg.wasm; built when missing): raw and gzip -9.
#      Target (issue 7): gzip < 1 MiB (Cloudflare's free plan allows 3 MiB compressed).
#   2. The admission decision in core, native (criterion, core/benches/admission.rs): an
#      admitted purchase from the raw headers to "forward" (JWT, body, bot score, gating,
#      ticket fingerprint and check, limiters, bucket); target < 5 µs. Also a 425 and its
#      parts. EB_CRITERION_SECONDS (3) measured seconds per bench.
#   3. Under wrangler dev (the built worker, release origin), closed loop k6 with EB_VUS (50)
#      virtual users for EB_SECONDS (10) each: GET / (a static asset, no worker code: the
#      floor), then purchases the edge refuses itself: 401 (no token), 403 (a curl client
#      from a public address), 425 (valid token, before the start), 409 (valid token and
#      ticket, sold-out cached at the edge). Target: each at least EB_MIN_RATIO (0.5) of the floor.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/infra/bench/lib.sh"

VUS=${EB_VUS:-50}
SECS=${EB_SECONDS:-10}
CRIT=${EB_CRITERION_SECONDS:-3}
MIN_RATIO=${EB_MIN_RATIO:-0.5}
# Working files live in the stack dir: target/bench is shared with other runs.
W="$DIR/edge-bench"
mkdir -p "$W"

# 1. size
bench_wasm_size
say "edge wasm: $WASM_RAW bytes raw, $WASM_GZ gzip"

# 2. criterion (its results land in target/criterion/<bench>/new/estimates.json)
say "criterion: the admission decision in core"
bench_criterion admission "$CRIT"

# 3. rejection paths under wrangler dev
bench_start_origin
bench_start_edge
stamp=$(date +%s)
soon=bench-edge-soon-$stamp sold=bench-edge-sold-$stamp
bench_put_event "$soon" 100 3600 86400
bench_put_event "$sold" 0 -5 86400
token=$(FLASHGATE_AUTH_SECRET="$AUTH_SECRET" "$BENCH_BIN" users --count 1 --prefix "benchedge$stamp" | sed -n 2p | cut -d, -f2)
[ -n "$token" ] || die "no token from flashgate users"
ua='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36'

cat >"$DIR/edge-paths.js" <<'JS'
// One request, again and again (closed loop); every answer must have the expected status.
import http from 'k6/http';
import { check } from 'k6';

export const options = {
  scenarios: { load: { executor: 'constant-vus', vus: Number(__ENV.VUS), duration: __ENV.DURATION } },
  thresholds: { checks: ['rate==1'] },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};
const headers = JSON.parse(__ENV.HEADERS);
const url = `${__ENV.EDGE_URL}${__ENV.TARGET_PATH}`;
const expect = Number(__ENV.EXPECT);

export default function () {
  const r = http.request(__ENV.METHOD, url, __ENV.METHOD === 'POST' ? '{}' : null, { headers, timeout: '10s' });
  check(r, { 'expected status': (x) => x.status === expect });
}
JS

path() { # name method path expect headers-json
  "$K6" run --quiet --no-color -e EDGE_URL="$EDGE_URL" -e VUS="$VUS" -e DURATION="${SECS}s" \
    -e METHOD="$2" -e TARGET_PATH="$3" -e EXPECT="$4" -e HEADERS="$5" \
    --summary-export "$W/edge-$1.json" "$DIR/edge-paths.js" >"$DIR/logs/k6-edge-$1.log" 2>&1 \
    || { tail -20 "$DIR/logs/k6-edge-$1.log" >&2; die "k6 edge $1 failed"; }
  say "edge $1: $(json_get "$W/edge-$1.json" metrics.http_reqs.rate) rps"
}
browser="\"user-agent\":\"$ua\",\"accept\":\"application/json\",\"accept-language\":\"zh-CN\""
path page GET / 200 "{$browser}"
path unauthenticated POST "/api/events/$soon/purchase" 401 "{$browser,\"content-type\":\"application/json\"}"
path bot POST "/api/events/$soon/purchase" 403 \
  "{\"user-agent\":\"curl/8.5.0\",\"cf-connecting-ip\":\"198.51.100.7\",\"authorization\":\"Bearer $token\",\"content-type\":\"application/json\"}"
path not_started POST "/api/events/$soon/purchase" 425 "{$browser,\"authorization\":\"Bearer $token\",\"content-type\":\"application/json\"}"
# With a valid ticket (the edge checks it before its sold-out mark; one serves the phase,
# it lasts 120 s): the first purchase is the origin's 409, the edge answers the rest while
# it remembers it.
ticket=$(curl -s -X POST -H "authorization: Bearer $token" -H "user-agent: $ua" -H 'content-type: application/json' \
  -d '{}' "$EDGE_URL/api/events/$sold/ticket" | python3 -c 'import json, sys; print(json.load(sys.stdin)["ticket"])') \
  || die "no ticket for the sold-out phase"
curl -s -o /dev/null -X POST -H "authorization: Bearer $token" -H "user-agent: $ua" -H "x-ticket: $ticket" "$EDGE_URL/api/events/$sold/purchase"
path sold_out POST "/api/events/$sold/purchase" 409 "{$browser,\"authorization\":\"Bearer $token\",\"x-ticket\":\"$ticket\",\"content-type\":\"application/json\"}"
curl -s "$EDGE_URL/__edge/stats" >"$W/edge-stats.json" || true

rate() { json_get "$W/edge-$1.json" metrics.http_reqs.rate | python3 -c 'import sys; print(round(float(sys.stdin.read())))'; }
p99() { json_get "$W/edge-$1.json" 'metrics.http_req_duration.p(99)' | python3 -c 'import sys; print(round(float(sys.stdin.read()), 1))'; }
floor=$(rate page)
bench_record "edge wasm size, raw" "$(bench_kib "$WASM_RAW")" KiB "" ""
bench_record "edge wasm size, gzip" "$(bench_kib "$WASM_GZ")" KiB "" "<1024"
bench_record "edge admission decision, admitted purchase (native)" "$(bench_median_us full_purchase_admitted)" µs "" "<5"
bench_record "edge admission decision, 425 (native)" "$(bench_median_us reject_not_started)" µs "" ""
bench_record "edge static asset rps (floor)" "$floor" rps "" ""
for p in unauthenticated bot not_started sold_out; do
  bench_record "edge $p rps (answered at the edge)" "$(rate $p)" rps "$floor" ">=$MIN_RATIO"
done
bench_record "edge not_started p99" "$(p99 not_started)" ms "$(p99 page)" ""

{
  echo "### edge"
  echo
  echo "- wasm: $WASM_RAW bytes raw, $WASM_GZ bytes gzip -9 ($WASM)"
  echo "- criterion medians (µs, native, this machine):"
  for b in full_purchase_admitted reject_not_started reject_bot_automation_agent reject_unauthenticated \
    part_jwt_verify part_ticket_verify part_fingerprint part_bot_assess; do
    echo "  - $b: $(bench_median_us "$b")"
  done
  echo "- k6 under wrangler dev, $VUS VUs × ${SECS}s per path; the edge's own counts afterwards:"
  echo
  echo '```'
  cat "$W/edge-stats.json" 2>/dev/null || true
  echo
  echo '```'
  echo
} >"$BENCH_OUT/notes-edge.md"
