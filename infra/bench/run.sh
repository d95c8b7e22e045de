#!/usr/bin/env bash
# ./dev bench [SUITE...] | ./dev bench help
#
# Benchmarks with ratios against floors measured in the same run, on a throwaway stack of
# its own (free loopback ports, a temp dir, stopped whatever happens). Each suite is a
# file infra/bench/<suite>.sh (see infra/bench/lib.sh for what it may use); suites run in
# the order origin, consumer, edge, fullstack, and any other file there runs after them.
# Prints one table and writes target/bench/report.md, target/bench/report.json and, from
# the full-stack suite, k6's HTML dashboard target/bench/k6-report.html.
#
# Settings: BENCH_SECONDS (10) measured seconds per origin load phase,
# BENCH_CONNECTIONS (32) connections of the origin load, BENCH_KEEP=1 keeps the stack's
# temp dir; each suite documents its own.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export ROOT
. infra/bench/lib.sh

ORDER="origin consumer edge fullstack"
describe() {
  case $1 in
    origin) echo "origin purchase path: CPU per 202 and per 409 vs per /healthz, rates, batch sizes, p50/p99, RSS" ;;
    consumer) echo "order consumer: orders/s into MariaDB" ;;
    edge) echo "edge worker" ;;
    fullstack) echo "k6 through the edge: page floor, event info, mixed scenario with invariants, HTML report" ;;
    *) sed -n '2s/^# \{0,1\}//p' "infra/bench/$1.sh" ;;
  esac
}
available() {
  local s f
  for s in $ORDER; do [ -f "infra/bench/$s.sh" ] && echo "$s"; done
  for f in infra/bench/*.sh; do
    s=$(basename "$f" .sh)
    case " $ORDER lib run " in *" $s "*) ;; *) echo "$s" ;; esac
  done
}

if [ "${1:-}" = help ] || [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  echo
  echo "suites:"
  for s in $ORDER; do
    if [ -f "infra/bench/$s.sh" ]; then printf '  %-10s %s\n' "$s" "$(describe "$s")"
    else printf '  %-10s (not written yet: add infra/bench/%s.sh)\n' "$s" "$s"; fi
  done
  for s in $(available); do case " $ORDER " in *" $s "*) ;; *) printf '  %-10s %s\n' "$s" "$(describe "$s")" ;; esac; done
  exit 0
fi

suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then mapfile -t suites < <(available); fi
for s in "${suites[@]}"; do
  [ -f "infra/bench/$s.sh" ] || die "no suite '$s' (./dev bench help lists them)"
done

started=$SECONDS
# Where the report lands at the end. While running, every file goes to the stack's own
# dir, so two runs at once (a shared machine) cannot mix their rows.
REPORT_DIR=${BENCH_REPORT_DIR:-$ROOT/target/bench}

say "building the release origin, the peer and the load generator"
t=$SECONDS
cargo build -q --release -p flashgate-origin -p flashgate-peer
(cd infra/bench/loadgen && cargo build -q --release --target-dir "$ROOT/target/loadgen")
build_s=$((SECONDS - t))
say "built in ${build_s}s"

DIR=$(mktemp -d "${TMPDIR:-/tmp}/flashgate-bench.XXXXXX")
BENCH_OUT="$DIR/out"
mkdir -p "$BENCH_OUT"
: >"$BENCH_OUT/results.jsonl"
export DIR BENCH_OUT
cleanup() {
  local status=$?
  stop_all
  if [ "${BENCH_KEEP:-}" = 1 ]; then say "stack dir kept: $DIR"; else rm -rf "$DIR"; fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$DIR/logs" "$DIR/run"
write_env "$DIR" "$(free_port)" "$(free_port)" "$(free_port)" "$(free_port)" "$(free_port)" "$(free_port)"
start_services
export REDIS_URL MYSQL_URL KAFKA_BROKERS ORDERS_TOPIC AUTH_SECRET EDGE_SECRET ADMIN_TOKEN \
  EDGE_URL ORIGIN_URL REDIS_PORT MYSQL_PORT KAFKA_PORT ORIGIN_PORT EDGE_PORT
bench_migrate
say "stack in $DIR (redis :$REDIS_PORT, mariadb :$MYSQL_PORT, broker :$KAFKA_PORT)"

failed=()
for s in "${suites[@]}"; do
  say "== suite $s"
  t=$SECONDS
  # Each suite is bounded by its own loops; this is the backstop.
  limit=${BENCH_SUITE_TIMEOUT:-420}
  # The original plan at full size runs 7 minutes per pass (infra/bench/plan.sh).
  [ "$s" = plan ] && limit=${BENCH_PLAN_TIMEOUT:-1500}
  if timeout -k 10 "$limit" bash "infra/bench/$s.sh"; then
    echo "$s ok $((SECONDS - t))" >>"$BENCH_OUT/suites.txt"
  else
    echo "$s failed $((SECONDS - t))" >>"$BENCH_OUT/suites.txt"
    failed+=("$s")
    say "suite $s failed (logs in $DIR/logs; BENCH_KEEP=1 keeps them)"
  fi
  # A clean slate for the next suite: only the services stay.
  for name in edge consume serve peer; do bench_stop "$name"; done
  say "suite $s took $((SECONDS - t))s"
done

python3 infra/bench/report.py "$BENCH_OUT" --root "$ROOT" --build-seconds "$build_s" \
  --total-seconds $((SECONDS - started))
mkdir -p "$REPORT_DIR"
rm -f "$REPORT_DIR"/*.json "$REPORT_DIR"/*.jsonl "$REPORT_DIR"/*.md "$REPORT_DIR"/*.txt "$REPORT_DIR"/*.csv \
  "$REPORT_DIR"/*.html
cp -r "$BENCH_OUT"/. "$REPORT_DIR"/
say "report: $REPORT_DIR/report.md, report.json$([ -f "$REPORT_DIR/k6-report.html" ] && echo ", k6-report.html")"
[ ${#failed[@]} -eq 0 ] || die "suites failed: ${failed[*]}"
