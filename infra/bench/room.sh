#!/usr/bin/env bash
# edge room: registrations vs the static asset floor, the draw of 100,000 and the purchase check (native)
#
#   1. The release wasm (edge/build/index_bg.wasm, the worker with its room; built when
#      missing): gzip -9. Target: < 1 MiB, as for the edge suite.
#   2. Criterion (core/benches/room.rs), RB_CRITERION_SECONDS (3) measured seconds per
#      bench: the draw of 100,000 entrants (their chain, the seal, every position, the
#      verifier over the entries), reported without a target; and one shopper's check at
#      the purchase with the room on (the receipt and the schedule, plus one position in a
#      draw of 100,000): target < 10 µs.
#   3. Under wrangler dev (the built worker with ROOM_ENABLED=true, release origin), an
#      event whose room is registering (it starts in an hour), k6 closed loop with RB_VUS
#      (50) virtual users: GET / (a static asset, no worker code: the floor) for
#      RB_SECONDS (10) before and after (the floor is their mean), and in between
#      registrations, each by a fresh user (RB_USERS, 3000, minted by `flashgate users`),
#      all 200, until the users run out or RB_SECONDS pass. Target: registrations/s at
#      least RB_MIN_RATIO (0.25) of the floor. Afterwards the room must count every
#      registration that was answered.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/infra/bench/lib.sh"

VUS=${RB_VUS:-50}
SECS=${RB_SECONDS:-10}
USERS=${RB_USERS:-3000}
CRIT=${RB_CRITERION_SECONDS:-3}
MIN_RATIO=${RB_MIN_RATIO:-0.25}
# Working files live in the stack dir: target/bench is shared with other runs.
W="$DIR/room-bench"
mkdir -p "$W"

# 1. size
bench_wasm_size
say "edge wasm: $WASM_RAW bytes raw, $WASM_GZ gzip"

# 2. criterion
say "criterion: the room's draw and its check at the purchase, in core"
bench_criterion room "$CRIT"

# 3. registrations under wrangler dev
bench_start_origin
# Registration opens an hour and a half before the start, so the whole run registers.
bench_start_edge ROOM_ENABLED=true ROOM_PREQUEUE_MS=5400000
stamp=$(date +%s)
event=bench-room-$stamp
# The start comes after the three phases: then the room seals its draw, and its count
# of entrants is the check that every answered registration is in it.
starts_in=$((3 * SECS + 90))
bench_put_event "$event" 100 "$starts_in" 86400
FLASHGATE_AUTH_SECRET="$AUTH_SECRET" "$BENCH_BIN" users --count "$((USERS + 1))" --prefix "benchroom${stamp}u" \
  | sed 1d >"$W/users.csv"
[ "$(wc -l <"$W/users.csv")" -eq "$((USERS + 1))" ] || die "flashgate users wrote $(wc -l <"$W/users.csv") users"
ua='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36'

# The first join creates the room's object and its seed: once, outside the measure.
first=$(tail -1 "$W/users.csv" | cut -d, -f2)
code=$(curl -s --max-time 10 -o "$W/first.json" -w '%{http_code}' -X POST "$EDGE_URL/api/events/$event/room" \
  -H "authorization: Bearer $first" -H "user-agent: $ua" -H 'content-type: application/json' -d '{}')
[ "$code" = 200 ] || die "the first join answered $code: $(cat "$W/first.json")"
[ -z "$(json_get "$W/first.json" position)" ] || die "the first join holds a position: the room is not registering"
head -n "$USERS" "$W/users.csv" | cut -d, -f2 >"$W/tokens.txt"

cat >"$DIR/room.js" <<'JS'
// GET / again and again for a duration (the floor), or one registration per fresh user
// until the users run out or the duration passes; every answer must be a 200.
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { SharedArray } from 'k6/data';

const join = __ENV.MODE === 'join';
const tokens = new SharedArray('tokens', () => (join ? open(__ENV.TOKENS).split('\n').filter(Boolean) : []));
export const options = {
  scenarios: {
    load: join
      ? { executor: 'shared-iterations', vus: Number(__ENV.VUS), iterations: tokens.length, maxDuration: __ENV.DURATION }
      : { executor: 'constant-vus', vus: Number(__ENV.VUS), duration: __ENV.DURATION },
  },
  thresholds: { checks: ['rate==1'] },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};
const browser = { 'user-agent': __ENV.UA, accept: 'application/json', 'accept-language': 'zh-CN' };

export default function () {
  const r = join
    ? http.post(`${__ENV.EDGE_URL}/api/events/${__ENV.EVENT}/room`, '{}', {
      headers: { ...browser, authorization: `Bearer ${tokens[exec.scenario.iterationInTest]}`, 'content-type': 'application/json' },
      timeout: '10s',
    })
    : http.get(`${__ENV.EDGE_URL}/`, { headers: browser, timeout: '10s' });
  check(r, { 'status 200': (x) => x.status === 200 });
}
JS

phase() { # name mode
  "$K6" run --quiet --no-color -e EDGE_URL="$EDGE_URL" -e VUS="$VUS" -e DURATION="${SECS}s" -e MODE="$2" \
    -e EVENT="$event" -e TOKENS="$W/tokens.txt" -e UA="$ua" \
    --summary-export "$W/room-$1.json" "$DIR/room.js" >"$DIR/logs/k6-room-$1.log" 2>&1 \
    || { tail -20 "$DIR/logs/k6-room-$1.log" >&2; die "k6 room $1 failed"; }
  say "room $1: $(json_get "$W/room-$1.json" metrics.http_reqs.count) requests," \
    "$(json_get "$W/room-$1.json" metrics.http_reqs.rate) rps"
}
phase page_before page
phase join join
phase page_after page

# Every answered registration must be in the room (plus the first one): once the draw
# is sealed, at the start, the room counts its entrants.
say "waiting for the start, when the room seals its draw"
for _ in $(seq 1 $((starts_in + 60))); do
  curl -fsS --max-time 10 "$EDGE_URL/api/events/$event/room" >"$W/room.json" || die "GET …/room failed"
  [ "$(json_get "$W/room.json" draw.sealed)" = True ] && break
  sleep 1
done
[ "$(json_get "$W/room.json" draw.sealed)" = True ] || die "the room did not seal its draw"
queued=$(json_get "$W/room.json" draw.entrants)
joined=$(json_get "$W/room-join.json" metrics.checks.passes)
missing=$(python3 -c "print(abs($queued - ($joined + 1)))")
curl -s --max-time 10 "$EDGE_URL/__edge/stats" >"$W/edge-stats.json" || true

metric() { # phase key digits
  json_get "$W/room-$1.json" "metrics.$2" | python3 -c "import sys; print(round(float(sys.stdin.read()), $3))"
}
floor=$(python3 -c "print(round(($(metric page_before http_reqs.rate 3) + $(metric page_after http_reqs.rate 3)) / 2))")
bench_record "room edge wasm size, gzip" "$(bench_kib "$WASM_GZ")" KiB "" "<1024"
bench_record "room draw of 100,000: the chain of registrations (native)" "$(bench_median_ms draw_chain_100k)" ms "" ""
bench_record "room draw of 100,000: the seal (native)" "$(bench_median_us draw_seal_100k)" µs "" ""
bench_record "room draw of 100,000: every position (native)" "$(bench_median_ms draw_positions_100k)" ms "" ""
bench_record "room draw of 100,000: verify_record (native)" "$(bench_median_ms draw_verify_100k)" ms "" ""
bench_record "room check at the purchase, receipt + schedule (native)" "$(bench_median_us room_admission)" µs "" ""
bench_record "room check at the purchase + one position of 100,000 (native)" \
  "$(bench_median_us room_admission_and_position)" µs "" "<10"
bench_record "room static asset rps (floor)" "$floor" rps "" ""
bench_record "room registrations rps (fresh users, 200)" "$(metric join http_reqs.rate 0)" rps "$floor" ">=$MIN_RATIO"
bench_record "room registration p50" "$(metric join http_req_duration.med 1)" ms "$(metric page_after http_req_duration.med 1)" ""
bench_record "room registration p99" "$(metric join 'http_req_duration.p(99)' 1)" ms "$(metric page_after 'http_req_duration.p(99)' 1)" ""
bench_record "room registrations answered but not counted" "$missing" count "" "<1"

{
  echo "### room"
  echo
  echo "- wasm: $WASM_RAW bytes raw, $WASM_GZ bytes gzip -9 ($WASM)"
  echo "- criterion medians (native, this machine):"
  for b in draw_chain_100k draw_positions_100k draw_verify_100k; do echo "  - $b: $(bench_median_ms "$b") ms"; done
  for b in draw_seal_100k room_admission room_position_100k room_admission_and_position; do
    echo "  - $b: $(bench_median_us "$b") µs"
  done
  echo "- k6 under wrangler dev, $VUS VUs: GET / for ${SECS}s before and after; $joined registrations" \
    "of $USERS fresh users (bounded by ${SECS}s); the room then counted $queued (with the first join)."
  echo "  The edge's own counts afterwards:"
  echo
  echo '```'
  cat "$W/edge-stats.json" 2>/dev/null || true
  echo
  echo '```'
  echo
} >"$BENCH_OUT/notes-room.md"
