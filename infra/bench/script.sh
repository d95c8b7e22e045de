#!/usr/bin/env bash
# reserve.lua's cost in Redis, in instructions (callgrind): per call, against a bare script call
#
# Instruction counts do not move with what else the shared machine is doing, so a change to
# the script can be judged on them where requests per second would drown in noise. Each
# variant gets a fresh redis-server under `valgrind --tool=callgrind` (AOF on, everysec, as
# the stack runs it) and BENCH_SCRIPT_CALLS (5000) single-attempt calls from redis-benchmark
# (8 clients, a new user, order id and signature per call, the key layout the origin uses,
# stock that never runs out), then 2 s for the per-user windows to expire; counted is what
# Redis executed from the first call to the end of those 2 s. The floor is the same call to
# a script that only returns (`return 1`): what any EVALSHA of that size costs.
# BENCH_SCRIPT_BASE=<git rev> adds the script as it was at that revision, for an A/B (a
# script from before unit numbers reads the given-back list's key as the user's window and
# the window's as the signature: both still new per call or never written, as its own).
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$ROOT/infra/bench/lib.sh"
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null \
  || die "valgrind is not installed (Debian: apt-get install valgrind)"
CALLS=${BENCH_SCRIPT_CALLS:-5000}
WORK="$DIR/script"
mkdir -p "$WORK"

# Instructions Redis executes for CALLS calls of the script in file $1.
instructions() { # name script-file
  local name=$1 file=$2 port pid sha
  port=$(free_port)
  rm -rf "$WORK/$name" && mkdir -p "$WORK/$name"
  (cd "$WORK/$name" && exec valgrind --tool=callgrind --callgrind-out-file="$WORK/$name/cg.out" \
    redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/$name" --appendonly yes \
    --appendfsync everysec --save '' --daemonize no --logfile "$WORK/$name/redis.log") \
    </dev/null >"$WORK/$name/valgrind.log" 2>&1 &
  pid=$!
  wait_for "redis under callgrind (logs in $WORK/$name)" 40 redis-cli -p "$port" ping
  redis-cli -p "$port" set 'fg:{bench}:stock' 1000000000 >/dev/null
  sha=$(redis-cli -p "$port" script load "$(cat "$file")")
  callgrind_control -z "$pid" >/dev/null 2>&1
  # KEYS: stock orders status outbox stats given_back, the user's window and the signature seen;
  # ARGV: now, window ms, limit, event, replay ms, deadline, user, order, room position
  # (none: '') (reserve.lua).
  timeout 600 redis-benchmark -p "$port" -c 8 -n "$CALLS" -r 1000000000 --csv EVALSHA "$sha" 8 \
    'fg:{bench}:stock' 'fg:{bench}:orders' 'fg:{bench}:status' 'fg:{bench}:outbox' \
    'fg:{bench}:stats' 'fg:{bench}:given_back' 'fg:{bench}:win:u__rand_int__' 'fg:{bench}:sig:s__rand_int__' \
    "$(date +%s)000" 1000 1 bench 65000 99999999999999 u__rand_int__ o__rand_int__ '' \
    >"$WORK/$name/benchmark.csv"
  sleep 2
  callgrind_control -d "$pid" >/dev/null 2>&1
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$pid" || true
  python3 - "$WORK/$name" "$CALLS" <<'PY'
import glob, sys
d, calls = sys.argv[1], int(sys.argv[2])
# The dump made after zeroing (cg.out.1) holds just the measured interval.
parts = sorted(glob.glob(d + "/cg.out.*"))
if not parts:
    sys.exit("no callgrind dump in " + d)
for line in open(parts[0]):
    if line.startswith(("summary:", "totals:")):
        print(round(int(line.split()[1]) / calls))
        break
else:
    sys.exit("no totals in " + parts[0])
PY
}

printf 'return 1\n' >"$WORK/bare.lua"
say "callgrind: $CALLS calls of a bare script"
bare=$(instructions bare "$WORK/bare.lua")
say "callgrind: $CALLS calls of reserve.lua"
now=$(instructions reserve "$ROOT/origin/src/redis/lua/reserve.lua")
bench_record "Redis instructions per reserve call (callgrind)" "$now" instr "$bare" ""
if [ -n "${BENCH_SCRIPT_BASE:-}" ]; then
  # The script moved to origin/src/redis/lua/ on 2026-12-02; older revisions have it in src/lua/.
  git -C "$ROOT" show "$BENCH_SCRIPT_BASE:origin/src/redis/lua/reserve.lua" >"$WORK/base.lua" 2>/dev/null \
    || git -C "$ROOT" show "$BENCH_SCRIPT_BASE:origin/src/lua/reserve.lua" >"$WORK/base.lua"
  say "callgrind: $CALLS calls of reserve.lua at $BENCH_SCRIPT_BASE"
  base=$(instructions base "$WORK/base.lua")
  bench_record "Redis instructions per reserve call, against reserve.lua at $BENCH_SCRIPT_BASE" "$now" instr "$base" ""
fi
