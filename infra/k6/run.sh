#!/usr/bin/env bash
# Runs one k6 scenario against a running stack, then checks the invariants in Redis and
# MariaDB. Exits non-zero when a threshold fails or an invariant breaks.
#
#   infra/k6/run.sh mixed|plan|flash|soak|smoke|chaos [--full] [--remote] [--users N] [--out DIR] [--no-check] [k6 run args...]
#
# plan is the original plan: mixed at its full size (0 -> 2,000 -> 0 VUs over 1m/5m/1m,
# 90 % browse, 10 % buy). The stack's settings come from the environment (EDGE_URL,
# ORIGIN_URL, ADMIN_TOKEN, AUTH_SECRET, REDIS_PORT, MYSQL_PORT) or, when EDGE_URL is unset,
# from $FLASHGATE_DEV_DIR/env (default .dev/env). Scenario knobs are environment variables
# documented at the top of each script (PEAK_VUS, RAMP_UP, STOCK, FLASH_USERS, ...).
# --remote: a deployed edge. Needs EDGE_URL, ORIGIN_URL (where the admin API answers) and
# ADMIN_TOKEN, and USERS_CSV (userId,authToken rows) or AUTH_SECRET to write one; samples
# and checks through GET /admin/events/{id}/stats only (no Redis or MariaDB access).
# Set K6_WEB_DASHBOARD=true K6_WEB_DASHBOARD_EXPORT=report.html for k6's HTML report.
# AS_EDGE=1 makes k6 play the edge: the shopper's requests go to ORIGIN_URL, signed with
# EDGE_SECRET as the edge signs them (infra/k6/lib.js). PROGRESS_S (10): seconds between
# progress lines.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/infra/versions.env"
. "$ROOT/infra/dev/paths.sh"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; }
scenario=${1:-}
case $scenario in
  mixed | plan | flash | soak | smoke | chaos) shift ;;
  -h | --help | help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac

full="" users="" out="" check=1 remote=""
while [ $# -gt 0 ]; do
  case $1 in
    --full) full=1; shift ;;
    --remote) remote=1; shift ;;
    --users) users=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-check) check=; shift ;;
    *) break ;;
  esac
done

if [ -n "$remote" ]; then
  [ -z "${AS_EDGE:-}" ] || { echo "k6: --remote goes through the edge; AS_EDGE does not apply" >&2; exit 2; }
  need="EDGE_URL ORIGIN_URL ADMIN_TOKEN"
  [ -n "${USERS_CSV:-}" ] || need="$need AUTH_SECRET"
else
  if [ -z "${EDGE_URL:-}" ]; then
    envfile="${FLASHGATE_DEV_DIR:-$ROOT/.dev}/env"
    [ -f "$envfile" ] || { echo "k6: no stack settings (EDGE_URL unset, no $envfile); run ./dev up" >&2; exit 2; }
    set -a; . "$envfile"; set +a
  fi
  need="EDGE_URL ORIGIN_URL ADMIN_TOKEN AUTH_SECRET REDIS_PORT MYSQL_PORT ${AS_EDGE:+EDGE_SECRET}"
fi
for v in $need; do
  [ -n "${!v:-}" ] || { echo "k6: $v is not set" >&2; exit 2; }
done
K6="$FG_K6_ROOT/bin/k6"
[ -x "$K6" ] || { echo "k6: $K6 is missing; run ./dev setup" >&2; exit 2; }
if [ -n "${USERS_CSV:-}" ] && [ -n "$remote" ]; then
  [ -r "$USERS_CSV" ] || { echo "k6: USERS_CSV $USERS_CSV is not readable" >&2; exit 2; }
  USERS_CSV=$(realpath "$USERS_CSV")
else
  BIN=${FLASHGATE_BIN:-$ROOT/target/debug/flashgate}
  [ -x "$BIN" ] || BIN=$ROOT/target/release/flashgate
  [ -x "$BIN" ] || { echo "k6: no flashgate binary; run cargo build -p flashgate-origin" >&2; exit 2; }
  USERS_CSV=
fi

stamp=$(date +%s)-$$
script=$scenario
case $scenario in
  smoke) script=mixed; export SMOKE=1 ;;
  plan) script=mixed; full=1 ;;
esac
# Enough distinct users for every buyer: mixed/soak buy on 1 iteration in 10.
if [ -z "$users" ]; then
  case $scenario in
    smoke) users=$(( ${SMOKE_ITERATIONS:-200} / 10 + 10 )) ;;
    flash) users=${FLASH_USERS:-1000} ;;
    chaos) users=$(( ${CHAOS_RATE:-15} * ${CHAOS_SECONDS:-60} )) ;;
    plan) users=${USERS:-60000} ;;
    *) users=${USERS:-30000} ;;
  esac
fi
out=${out:-$ROOT/target/k6/$scenario-$stamp}
mkdir -p "$out"
out=$(realpath "$out")
export EVENT=${EVENT:-k6-$scenario-$stamp}
[ -n "$full" ] && export FULL=1
if [ -z "$USERS_CSV" ]; then
  export USERS_CSV="$out/users.csv"
  FLASHGATE_AUTH_SECRET="$AUTH_SECRET" "$BIN" users --count "$users" --prefix "k6${stamp//-/x}u" \
    --out "$USERS_CSV" >/dev/null
else
  export USERS_CSV
  users=$(($(wc -l <"$USERS_CSV") - 1))
fi

echo "[k6] $scenario: event $EVENT, $users users, output in $out"
export K6_NO_USAGE_REPORT=true SUMMARY_DIR="$out"
# With the dashboard on, no server (port -1): only the exported HTML, which is written only
# if at least one aggregation period passed (default 10 s, too long for short runs).
export K6_WEB_DASHBOARD_HOST=${K6_WEB_DASHBOARD_HOST:-127.0.0.1}
export K6_WEB_DASHBOARD_PORT=${K6_WEB_DASHBOARD_PORT:--1}
export K6_WEB_DASHBOARD_PERIOD=${K6_WEB_DASHBOARD_PERIOD:-2s}
rm -f "$out/summary.txt" "$out/summary.json"
set +e
# k6's progress (a line a second without a terminal) and logs go to k6.log; the summary
# (infra/k6/summary.js) to summary.txt and summary.json.
"$K6" run --no-color "$@" "$ROOT/infra/k6/$script.js" >"$out/k6.log" 2>&1 &
k6pid=$!
# The stock, sampled while the load runs (ends with k6, which is bounded by its scenario):
# from Redis, or remotely from the admin stats.
key="${KEY_PREFIX:-fg:}{$EVENT}:stock"
stock() {
  if [ -n "$remote" ]; then
    curl -fsS --max-time 5 -H "authorization: Bearer $ADMIN_TOKEN" \
      "$ORIGIN_URL/admin/events/$EVENT/stats" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["stock_left"])' 2>/dev/null
  else
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --raw GET "$key" 2>/dev/null
  fi
}
every=${PROGRESS_S:-10} started=$SECONDS next=$((SECONDS + every))
while kill -0 "$k6pid" 2>/dev/null; do
  stock >>"$out/stock-samples"
  if [ "$SECONDS" -ge "$next" ]; then
    next=$((SECONDS + every))
    running=$(grep -a '^running (' "$out/k6.log" | tail -1)
    echo "[k6] $((SECONDS - started)) s: ${running:-starting}; stock left $(tail -1 "$out/stock-samples" 2>/dev/null)"
  fi
  sleep "$([ -n "$remote" ] && echo 1 || echo 0.5)"
done
wait "$k6pid"
k6_status=$?
set -e
if [ -f "$out/summary.txt" ]; then
  cat "$out/summary.txt"
else
  tail -20 "$out/k6.log"
fi
grep -E 'level=(error|warning)' "$out/k6.log" | sed 's/^time="[^"]*" //' | sort | uniq -c | sort -rn | head -10 || true
if [ $k6_status -ne 0 ]; then
  echo "[k6] $scenario: k6 exited with $k6_status (a threshold failed or the script broke; see $out/k6.log)" >&2
fi
inv_status=0
# --no-check: the caller checks the invariants when it is done with the stack (the chaos
# drill, after its last step).
[ -z "$check" ] || python3 "$ROOT/infra/k6/check-invariants.py" --event "$EVENT" --summary "$out/summary.json" \
  --stock-samples "$out/stock-samples" ${remote:+--remote} || inv_status=$?
[ $k6_status -eq 0 ] && [ $inv_status -eq 0 ]
