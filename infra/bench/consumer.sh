#!/usr/bin/env bash
# order consumer: orders/s into MariaDB with the rate cap off, vs a plain batched INSERT loop
#
# origin/examples/consumer_bench.rs (release): BENCH_CONSUMER_ORDERS (200000) orders are
# produced to a fresh topic, packed as the relay packs them (BENCH_PACK per message, default
# the relay's 16), and left in Redis as their reservations would have left them (each
# buyer's order, `queued:`), then the real consumer writes them (batches of 500, rate cap off),
# timed from its first finished batch to its last (the one-off group join is reported
# apart; progress is read from its own orders counter, not by querying the database);
# the floor is the same rows inserted straight into MariaDB by a plain loop (same client
# library, one connection, one autocommit multi-row INSERT per batch of the same size),
# measured in the same run. A second floor is the bare read rate of the same topic by a
# plain consumer.
# Targets (issue 6): consumer >= 0.7 x the floor, and >= 5000 orders/s (25 x the original
# design's 200 orders/s).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/infra/bench/lib.sh"

bench_migrate
(cd "$ROOT" && cargo build -q --release -p flashgate-origin --example consumer_bench)
out="$BENCH_OUT/consumer.json"
BENCH_ORDERS=${BENCH_CONSUMER_ORDERS:-200000} RUST_LOG=warn \
  "$ROOT/target/release/examples/consumer_bench" >"$out"
say "consumer: $(cat "$out")"
read -r consumer floor kafka redis_us < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["consumer_rows_per_s"], d["floor_rows_per_s"], d["kafka_read_per_s"], round(d["redis_us_per_order"], 2))' "$out")
bench_record "consumer orders/s (rate cap off)" "$consumer" "rows/s" "$floor" ">=0.7"
# The consumer cannot write faster than it can read: the bare read rate of the same topic
# (a plain consumer, no processing) is its other floor.
bench_record "consumer orders/s vs the bare broker read" "$consumer" "rows/s" "$kafka" ""
bench_record "consumer orders/s vs the original 200/s" "$consumer" "rows/s" "200" ">=25"
# Redis's CPU (INFO cpu) over the consumer's run, per order: mostly the confirmation.
bench_record "consumer: Redis CPU per order" "$redis_us" "µs" "" ""
