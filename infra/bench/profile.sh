#!/usr/bin/env bash
# where a purchase's CPU goes: perf profiles of the origin and Redis under purchases, as flame graphs
#
# The release `flashgate serve` (relay on, its own topic) under BENCH_PROFILE_SECONDS (10)
# of purchases by unique users from fg-load (BENCH_CONNECTIONS (32)), while `perf record`
# samples the origin and Redis (software cpu-clock at 499 Hz, DWARF call stacks: the release
# build keeps no frame pointers). Each profile becomes a flame graph (inferno, installed by
# ./dev setup): target/bench/flame-origin-purchase.svg and flame-redis-purchase.svg, and its
# folded stacks (.folded) for diffs; the notes list the hottest frames.
# Then the origin's instructions per purchase (callgrind: the same binary under valgrind,
# BENCH_PROFILE_REQUESTS (2000) purchases by unique users on 8 connections after 300 to
# warm up, counted until the relay has moved them all to the broker): a figure that does
# not move with the machine's load, for A/B runs of a change to the origin. valgrind offers
# no SHA extensions, so SHA-256 runs in software there: the signature check is about a
# fifth of these instructions, against under 1 % of the CPU in the perf profile.
# BENCH_PROFILE_BASE_BIN=<path to another build of flashgate> measures it too, as the floor.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/infra/bench/lib.sh"
command -v perf >/dev/null || die "perf is not installed (Debian: apt-get install linux-perf)"
INFERNO="$FG_INFERNO_ROOT/bin"
[ -x "$INFERNO/inferno-flamegraph" ] || die "inferno is missing in $INFERNO; run ./dev setup"

SECS=${BENCH_PROFILE_SECONDS:-10}
CONN=${BENCH_CONNECTIONS:-32}
topic=bench.profile.orders
rm -f "$BENCH_OUT"/flame-*
bench_migrate "FLASHGATE_ORDERS_TOPIC=$topic"
bench_start_origin "FLASHGATE_ORDERS_TOPIC=$topic"
stamp=$(date +%s)
buy=bench-profile-$stamp
bench_put_event "$buy" 100000000 -5 86400

record() { # name pid
  perf record -q -F 499 -e cpu-clock --call-graph dwarf,16384 -p "$2" -o "$DIR/perf-$1.data" \
    -- sleep "$SECS" >"$DIR/logs/perf-$1.log" 2>&1
}
"$BENCH_LOAD" --addr "127.0.0.1:$ORIGIN_PORT" --connections "$CONN" --duration $((SECS + 2)) --warmup 1 \
  --method POST --body '{}' --sign-env EDGE_SECRET --path "/api/events/$buy/purchase" \
  --user-prefix "p${stamp}x" >"$BENCH_OUT/flame-load.json" &
load=$!
sleep 1
record origin "$(bench_pid serve)" &
rec_origin=$!
record redis "$(bench_pid redis)" &
rec_redis=$!
wait "$rec_origin" "$rec_redis" || die "perf record failed (logs in $DIR/logs/perf-*.log)"
wait "$load"
say "profile load: $(cat "$BENCH_OUT/flame-load.json")"

for name in origin redis; do
  # Rust's generic parameters dropped from the frames (`Harness<T, S>::poll` -> `Harness::poll`),
  # which merges what differs only in them and keeps the graph readable and small.
  perf script -i "$DIR/perf-$name.data" 2>/dev/null | "$INFERNO/inferno-collapse-perf" | python3 -c '
import collections, re, sys
generic = re.compile(r"(?<=[\w:}\]])<[^<>]*>")
merged = collections.Counter()
for line in sys.stdin:
    stack, _, count = line.rstrip().rpartition(" ")
    frames = []
    for f in stack.split(";"):
        prev = None
        while prev != f:
            prev, f = f, generic.sub("", f)
        frames.append(f)
    merged[";".join(frames)] += int(count)
for stack, count in merged.items():
    print(stack, count)' >"$BENCH_OUT/flame-$name-purchase.folded"
  "$INFERNO/inferno-flamegraph" --minwidth 0.1 --title "flashgate bench: $name CPU under purchases by unique users" \
    --countname ns <"$BENCH_OUT/flame-$name-purchase.folded" >"$BENCH_OUT/flame-$name-purchase.svg"
done

# The hottest frames: by self time (the stack's last frame) and by total (anywhere on it).
python3 - "$BENCH_OUT" <<'PY'
import collections, sys
out = sys.argv[1]
notes = ["### profile (where a purchase's CPU goes)", "",
         "- flame graphs: target/bench/flame-origin-purchase.svg, target/bench/flame-redis-purchase.svg", ""]
for name in ("origin", "redis"):
    self_t, total, n = collections.Counter(), collections.Counter(), 0
    for line in open(f"{out}/flame-{name}-purchase.folded"):
        stack, _, count = line.rstrip().rpartition(" ")
        c = int(count)
        frames = stack.split(";")
        n += c
        self_t[frames[-1]] += c
        for f in set(frames):
            total[f] += c
    short = lambda f: f[:110]
    notes += [f"- {name}: {n / 1e9:.1f} s of CPU sampled; most self time: "
              + "; ".join(f"{100 * c / n:.1f} % {short(f)}" for f, c in self_t.most_common(8)), ""]
open(f"{out}/notes-profile.md", "w").write("\n".join(notes) + "\n")
PY

# Instructions the origin executes per purchase, under callgrind: binary name.
origin_instructions() { # binary name
  local bin=$1 name=$2 port pid event n=${BENCH_PROFILE_REQUESTS:-2000}
  bench_stop serve
  event=bench-instr-$name-$stamp
  mkdir -p "$DIR/callgrind-$name"
  (bench_app_env; export FLASHGATE_ORDERS_TOPIC=$topic; cd "$DIR/callgrind-$name" && exec valgrind --tool=callgrind \
    --callgrind-out-file="$DIR/callgrind-$name/cg.out" "$bin" serve) </dev/null >"$DIR/logs/callgrind-$name.log" 2>&1 &
  pid=$!
  wait_for "the origin under callgrind (log in $DIR/logs/callgrind-$name.log)" 120 curl -fsS "$ORIGIN_URL/healthz"
  bench_put_event "$event" 100000000 -5 86400
  buy_n() { # count prefix
    "$BENCH_LOAD" --addr "127.0.0.1:$ORIGIN_PORT" --connections 8 --max-requests "$1" --duration 300 --warmup 0 \
      --timeout-ms 30000 --method POST --body '{}' --sign-env EDGE_SECRET --path "/api/events/$event/purchase" \
      --user-prefix "$2" >"$DIR/logs/callgrind-$name-$2.json"
  }
  drained() { [ "$(redis-cli -p "$REDIS_PORT" xlen "fg:{$event}:outbox")" = 0 ]; }
  buy_n 300 "w${name}x"
  for _ in $(seq 300); do drained && break; sleep 0.1; done
  callgrind_control -z "$pid" >/dev/null 2>&1
  buy_n "$n" "m${name}x"
  for _ in $(seq 300); do drained && break; sleep 0.1; done
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  python3 - "$DIR/callgrind-$name" "$n" "$DIR/logs/callgrind-$name-m${name}x.json" <<'PY'
import glob, json, sys
d, n, run = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3]))
got = run["statuses"].get("202", 0)
if got != n:
    sys.exit(f"callgrind run: {got} of {n} purchases answered 202: {run['statuses']}")
# The dump made after zeroing holds just the measured purchases (one file per thread).
total = 0
for part in glob.glob(d + "/cg.out.*"):
    for line in open(part):
        if line.startswith(("summary:", "totals:")):
            total += int(line.split()[1])
            break
print(round(total / n))
PY
}
say "callgrind: the origin, ${BENCH_PROFILE_REQUESTS:-2000} purchases"
now=$(origin_instructions "$BENCH_BIN" now)
base=""
if [ -n "${BENCH_PROFILE_BASE_BIN:-}" ]; then
  say "callgrind: the base origin $BENCH_PROFILE_BASE_BIN"
  base=$(origin_instructions "$BENCH_PROFILE_BASE_BIN" base)
fi
bench_record "origin instructions per purchase (callgrind)" "$now" instr "$base" ""
