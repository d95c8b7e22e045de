#!/usr/bin/env bash
# Smoke version of the mixed k6 scenario (infra/k6/mixed.js), run by ./dev test against
# its throwaway stack: 20 virtual users, 200 iterations (1 in 10 buys, 20 buyers for 10
# units) within 30 s, then the invariants in Redis and MariaDB. Fails the test run when a
# threshold fails (undocumented answer, 5xx other than 503, a failed check, p99 of
# admitted purchases) or an invariant breaks (oversell, duplicates, lost orders). Then the
# same with k6 as the edge, straight to the origin; then in remote mode, as against a
# deployed edge.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/infra/versions.env"
. "$ROOT/infra/dev/paths.sh"
: "${EDGE_URL:?the stack env is exported by ./dev test}" "${DIR:?the stack dir}"
case $EDGE_URL$ORIGIN_URL in
  *127.0.0.1*127.0.0.1*) ;;
  *) echo "k6-smoke: loopback only (EDGE_URL=$EDGE_URL ORIGIN_URL=$ORIGIN_URL)" >&2; exit 2 ;;
esac
export SMOKE_VUS=20 SMOKE_ITERATIONS=200 SMOKE_MAX=30s STOCK=10 THINK_S=0.1 \
  P99_MS=${K6_SMOKE_P99_MS:-2000} REQUEST_TIMEOUT=10s DRAIN_S=15
start=$SECONDS
# Bounded twice: by the scenario (SMOKE_MAX, DRAIN_S) and, as a backstop, here.
timeout -k 5 58 bash "$ROOT/infra/k6/run.sh" smoke --out "$DIR/k6-smoke" "$@"
# k6 as the edge (what `./dev bench plan` runs at full size): the same smoke straight to the
# origin, every request signed by k6's HMAC as core/src/sign.rs signs it; a refused
# signature (401) is an undocumented answer and fails the run.
: "${EDGE_SECRET:?the stack env is exported by ./dev test}"
AS_EDGE=1 timeout -k 5 58 bash "$ROOT/infra/k6/run.sh" smoke --out "$DIR/k6-smoke-as-edge" "$@"
# Remote mode, the stack standing in for a deployed one: users from a CSV, no Redis,
# MariaDB or secrets in reach (the invariants through the admin stats only), and every VU
# a public client of its own (CF-Connecting-IP, which `wrangler dev` keeps), so the edge
# scores each request as a bot suspect: a refused request is an undocumented 403.
remote=$DIR/k6-smoke-remote
mkdir -p "$remote"
FLASHGATE_AUTH_SECRET="$AUTH_SECRET" "${FLASHGATE_BIN:-$ROOT/target/debug/flashgate}" users \
  --count 40 --prefix "k6remote$$u" --out "$remote/users.csv" >/dev/null
env -u REDIS_PORT -u MYSQL_PORT -u REDIS_URL -u MYSQL_URL -u AUTH_SECRET -u EDGE_SECRET \
  USERS_CSV="$remote/users.csv" PUBLIC_CLIENT_IPS=20 \
  timeout -k 5 58 bash "$ROOT/infra/k6/run.sh" smoke --remote --out "$remote/run" "$@"
echo "k6-smoke: passed in $((SECONDS - start)) s"
