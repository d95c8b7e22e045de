#!/usr/bin/env bash
# flashgate against the original design (infra/bench/peer), A B A B: rate, p50/p99, CPU per answer
#
# The peer (`fg-peer`, infra/bench/peer) does what the original design did for one
# purchase: check the bearer JWT, DECR the stock in Redis (below zero: INCR back, 409),
# queue {userId, productId} to its own orders topic, answer 202. flashgate is the release
# `flashgate serve` (relay on, no consumer, its own topic) with every guarantee the peer
# lacks. Both run on this stack's Redis and broker, driven by the same fg-load (one
# thread, BENCH_CONNECTIONS (32) keep-alive connections, a new user per request: signed
# as the edge signs for flashgate, with the shopper's bearer token for the peer), one
# after the other and then again (A B A B), BENCH_SECONDS (10) after BENCH_WARMUP (2)
# per phase, in two scenarios:
#   1. unique buyers, ample stock (100 million)   -> 202
#   2. a sold-out storm (stock 0)                  -> 409
# Around each phase the CPU time of the service, Redis and the broker is read from
# /proc/<pid>/stat (fg-load reports its own), until what the phase queued has reached the
# broker (flashgate's outbox empty, the peer's producer empty; at most 30 s): CPU per
# answer is that CPU over every answer of the documented status, warm-up included.
# Redis's own account of each phase, time and calls per command (INFO commandstats, the
# scripts' commands included in theirs), is kept in peer-redis-commands-<phase>.txt.
# Targets (issue 24): flashgate's purchase rate >= 1.0 x the peer's and its CPU per 202,
# all processes, <= 1.0 x the peer's; its sold-out rate >= 1.0 x the peer's.
# BENCH_ORIGIN_ENV="FLASHGATE_X=y ..." passes settings to the origin; BENCH_PEER_BACKOFF=1
# makes the clients of both wait out a 429's or 503's Retry-After, as the activity page
# does (only flashgate answers them: its adaptive limit).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/infra/bench/lib.sh"

SECS=${BENCH_SECONDS:-10}
WARM=${BENCH_WARMUP:-2}
CONN=${BENCH_CONNECTIONS:-32}
PEER_BIN=${BENCH_PEER_BIN:-$ROOT/target/release/fg-peer}
[ -x "$PEER_BIN" ] || die "no peer binary at $PEER_BIN (cargo build --release -p flashgate-peer)"
fg_topic=bench.peer.flashgate.orders peer_topic=bench.peer.orders
rm -f "$BENCH_OUT"/peer-*
read -ra extra <<<"${BENCH_ORIGIN_ENV:-}"

bench_migrate "FLASHGATE_ORDERS_TOPIC=$peer_topic"
bench_migrate "FLASHGATE_ORDERS_TOPIC=$fg_topic"
bench_start_origin "FLASHGATE_ORDERS_TOPIC=$fg_topic" "${extra[@]}"
peer_port=$(free_port)
trap 'bench_stop peer' EXIT
spawn peer "$ROOT" env PEER_LISTEN="127.0.0.1:$peer_port" PEER_REDIS_URL="$REDIS_URL" \
  PEER_KAFKA_BROKERS="$KAFKA_BROKERS" PEER_TOPIC="$peer_topic" PEER_AUTH_SECRET="$AUTH_SECRET" "$PEER_BIN"
wait_for "the peer (logs in $DIR/logs/peer.log)" 30 curl -fsS "http://127.0.0.1:$peer_port/healthz"

stamp=$(date +%s)
buy=bench-peer-buy-$stamp sold=bench-peer-sold-$stamp
bench_put_event "$buy" 100000000 -5 86400
bench_put_event "$sold" 0 -5 86400
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
rcli set "peer:{$buy}:stock" 100000000 >/dev/null
rcli set "peer:{$sold}:stock" 0 >/dev/null

# CPU seconds (user + system, all threads) a process has used so far.
cpu_s() { awk '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu_all() { echo "$(cpu_s "$1") $(cpu_s "$(bench_pid redis)") $(cpu_s "$(bench_pid kafka)")"; }
# Whether what a phase queued has reached the broker.
drained() { # system
  case $1 in
    flashgate) [ "$(rcli xlen "fg:{$buy}:outbox")" = 0 ] ;;
    peer) [ "$(curl -fsS "http://127.0.0.1:$peer_port/healthz")" = 0 ] ;;
  esac
}
phase() { # system scenario round
  local system=$1 scenario=$2 round=$3 pid port event name before after args
  name="$system-$scenario-$round"
  event=$buy; [ "$scenario" = soldout ] && event=$sold
  if [ "$system" = flashgate ]; then
    pid=$(bench_pid serve) port=$ORIGIN_PORT args=(--sign-env EDGE_SECRET)
    curl -fsS "$ORIGIN_URL/metrics" >"$DIR/logs/metrics-before.txt" || true
  else
    pid=$(bench_pid peer) port=$peer_port args=(--bearer-env AUTH_SECRET)
  fi
  rcli config resetstat >/dev/null
  before=$(cpu_all "$pid")
  [ -n "${BENCH_PEER_BACKOFF:-}" ] && args+=(--backoff)
  "$BENCH_LOAD" --addr "127.0.0.1:$port" --connections "$CONN" --duration "$SECS" --warmup "$WARM" \
    --method POST --body '{}' "${args[@]}" --path "/api/events/$event/purchase" \
    --user-prefix "${system:0:1}${scenario:0:1}${round}x$stamp" >"$BENCH_OUT/peer-$name.json"
  for _ in $(seq 300); do drained "$system" && break; sleep 0.1; done
  drained "$system" || say "peer: $name still had orders on their way after 30 s"
  after=$(cpu_all "$pid")
  rcli info commandstats >"$BENCH_OUT/peer-redis-commands-$name.txt"
  python3 -c 'import json,sys; b,a=[list(map(float,x.split())) for x in sys.argv[1:3]]
print(json.dumps(dict(zip(["service","redis","broker"],[round(y-x,2) for x,y in zip(b,a)]))))' \
    "$before" "$after" >"$BENCH_OUT/peer-cpu-$name.json"
  if [ "$system" = flashgate ]; then
    curl -fsS "$ORIGIN_URL/metrics" >"$DIR/logs/metrics-after.txt" || true
    python3 "$ROOT/infra/bench/batch_sizes.py" "$DIR/logs/metrics-before.txt" "$DIR/logs/metrics-after.txt" \
      >"$BENCH_OUT/peer-batch-$name.json"
  fi
  say "peer $name: $(cat "$BENCH_OUT/peer-$name.json") cpu $(cat "$BENCH_OUT/peer-cpu-$name.json")"
}
for round in 1 2; do
  for scenario in purchase soldout; do
    phase flashgate "$scenario" "$round"
    phase peer "$scenario" "$round"
  done
done

python3 "$ROOT/infra/bench/peer_report.py" "$BENCH_OUT" >"$DIR/peer-rows.txt"
while IFS='|' read -r name value unit floor target; do
  bench_record "$name" "$value" "$unit" "$floor" "$target"
done <"$DIR/peer-rows.txt"
