#!/usr/bin/env bash
# a purchase's scripts in Redis, in instructions (callgrind): reserve.lua by batch size vs DECR, confirm_many.lua
#
# Instruction counts do not move with what else the shared machine is doing, so a change to
# the script can be judged on them where requests per second would drown in noise. Each
# variant gets a fresh redis-server under `valgrind --tool=callgrind` (AOF on, everysec, as
# the stack runs it) and about BENCH_SCRIPT_CALLS (5000) attempts from redis-benchmark
# (8 clients, a new user, order id and signature per attempt, the key layout the origin
# uses, stock that never runs out, a sale under way: 1,000 buyers already), then 2 s for
# the per-user windows to expire; counted is what Redis executed from the first call to the
# end of those 2 s.
#   - single-attempt calls, against the same call to a script that only returns
#     (`return 1`): what any EVALSHA of that size costs;
#   - calls of BENCH_SCRIPT_BATCHES ("4 16 64") attempts each, as the origin coalesces
#     them under load: instructions per reservation, against the original design's
#     reservation, one DECR (infra/bench/peer), measured the same way. Target (issue 24):
#     at most as many;
#   - at the largest batch size, two floors per attempt: its arguments alone (a script that
#     only returns) and those with the replay guard's, the order's and the window's
#     commands alone (no decision, no write but the guard's);
#   - the consumer's confirmation (confirm_many.lua), per order of batches of 500 queued
#     orders, the other script every purchase runs.
# BENCH_SCRIPT_BASE=<git rev> adds the scripts as they were at that revision (reserve.lua
# alone in its call and at each batch size, confirm_many.lua), for an A/B (a reserve.lua
# from before unit numbers reads the given-back list's key as the user's window and the
# window's as the signature: both still new per call or never written, as its own).
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$ROOT/infra/bench/lib.sh"
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null \
  || die "valgrind is not installed (Debian: apt-get install valgrind)"
CALLS=${BENCH_SCRIPT_CALLS:-5000}
WORK="$DIR/script"
mkdir -p "$WORK"

# A fresh redis-server under callgrind, as the stack runs it, with a sale under way; sets
# PORT and PID. Its counters are zeroed by callgrind_count's caller: `callgrind_control -z`.
callgrind_redis() { # name
  PORT=$(free_port)
  rm -rf "$WORK/$1" && mkdir -p "$WORK/$1"
  (cd "$WORK/$1" && exec valgrind --tool=callgrind --callgrind-out-file="$WORK/$1/cg.out" \
    redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK/$1" --appendonly yes \
    --appendfsync everysec --save '' --daemonize no --logfile "$WORK/$1/redis.log") \
    </dev/null >"$WORK/$1/valgrind.log" 2>&1 &
  PID=$!
  wait_for "redis under callgrind (logs in $WORK/$1)" 40 redis-cli -p "$PORT" ping
  redis-cli -p "$PORT" set 'fg:{bench}:stock' 1000000000 >/dev/null
  # A sale under way: its buyers' hashes past the size where Redis keeps them as a flat
  # list (hash-max-listpack-entries, 128), scanned per lookup; a sale of more than 128
  # buyers spends nearly all of its calls on the larger form.
  redis-cli -p "$PORT" eval "for i = 1, 1000 do
      redis.call('HSET', KEYS[1], 'b' .. i, 'o' .. i)
      redis.call('HSET', KEYS[2], 'b' .. i, 'queued:o' .. i)
    end" 2 'fg:{bench}:orders' 'fg:{bench}:status' >/dev/null
  redis-cli -p "$PORT" set 'peer:{bench}:stock' 1000000000 >/dev/null
}

# Stops the server of callgrind_redis and prints its instructions since they were zeroed,
# per unit (a call, an order).
callgrind_count() { # name units
  callgrind_control -d "$PID" >/dev/null 2>&1
  redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
  wait "$PID" || true
  python3 - "$WORK/$1" "$2" <<'PY'
import glob, sys
d, units = sys.argv[1], int(sys.argv[2])
# The dump made after zeroing (cg.out.1) holds just the measured interval.
parts = sorted(glob.glob(d + "/cg.out.*"))
if not parts:
    sys.exit("no callgrind dump in " + d)
for line in open(parts[0]):
    if line.startswith(("summary:", "totals:")):
        print(round(int(line.split()[1]) / units))
        break
else:
    sys.exit("no totals in " + parts[0])
PY
}

# Instructions Redis executes per call for CALLS calls of a redis-benchmark command, each
# `SCRIPT` in it standing for the SHA of the script in file $SCRIPT_FILE (loaded first).
instructions() { # name calls command...
  local name=$1 calls=$2 sha; shift 2
  callgrind_redis "$name"
  sha=$(redis-cli -p "$PORT" script load "$(cat "${SCRIPT_FILE:-$WORK/bare.lua}")")
  callgrind_control -z "$PID" >/dev/null 2>&1
  timeout 600 redis-benchmark -p "$PORT" -c 8 -n "$calls" -r 1000000000 --csv "${@/#SCRIPT/$sha}" \
    >"$WORK/$name/benchmark.csv"
  sleep 2
  callgrind_count "$name" "$calls"
}

# Instructions per order of the consumer's confirmation (confirm_many.lua in file $2):
# BENCH_CONFIRM_BATCHES (20) calls of a consumer batch (500 orders) each, every order
# queued as a reservation leaves it.
confirm_instructions() { # name file
  local batches=${BENCH_CONFIRM_BATCHES:-20} sha
  callgrind_redis "$1"
  sha=$(redis-cli -p "$PORT" script load "$(cat "$2")")
  python3 - "$WORK/$1" "$batches" 500 "$sha" <<'PY'
import sys
d, batches, size, sha = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def resp(*args):
    args = [str(a).encode() for a in args]
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
seed, calls = [], []
for b in range(batches):
    pairs = [(f"c{b}x{i}", f"oc{b}x{i}") for i in range(size)]
    seed.append(resp("HSET", "fg:{bench}:orders", *[x for p in pairs for x in p]))
    seed.append(resp("HSET", "fg:{bench}:status", *[x for u, o in pairs for x in (u, "queued:" + o)]))
    calls.append(resp("EVALSHA", sha, 3, "fg:{bench}:status", "fg:{bench}:stats",
                      "fg:{bench}:orders", *[x for p in pairs for x in p]))
open(d + "/seed.resp", "wb").write(b"".join(seed))
open(d + "/calls.resp", "wb").write(b"".join(calls))
PY
  redis-cli -p "$PORT" --pipe <"$WORK/$1/seed.resp" >/dev/null
  callgrind_control -z "$PID" >/dev/null 2>&1
  redis-cli -p "$PORT" --pipe <"$WORK/$1/calls.resp" >"$WORK/$1/pipe.log"
  [ "$(redis-cli -p "$PORT" hget 'fg:{bench}:stats' confirmed)" = $((batches * 500)) ] \
    || die "confirm_many.lua confirmed $(redis-cli -p "$PORT" hget 'fg:{bench}:stats' confirmed) of $((batches * 500)) orders"
  callgrind_count "$1" $((batches * 500))
}

# The origin's reserve call for N attempts (KEYS: stock orders status outbox stats
# given_back, then per attempt the user's window and the signatures of its time slice;
# ARGV: now, window ms, limit, event, replay ms, deadline, the unit before the first (0)
# and no claim deadline (''), as for an event of one stock bucket, then per attempt user,
# order, room position and client network (none: '') and signature; see reserve.lua), a
# new user, order id and signature per attempt. A script from before stock buckets (its
# attempts from ARGV 7) takes neither of the two; one from before client networks, no
# network; one from before the slices, a key per signature and no signature argument.
reserve_call() { # attempts file
  local i keys=() args=() split=(0 '') extra=('' '') guard slice
  ! grep -qF 'ARGV[7 + 3' "$2" || split=()
  grep -qF 'ARGV[12 + 4' "$2" || extra=('')
  # Since 2026-12-03 the signatures of a time slice share a set (one per call here: the
  # attempts of a call are signed within milliseconds); before, a key each.
  slice="fg:{bench}:sigs:$(( ($(date +%s) / 10 + 1) * 10000 ))"
  guard=('fg:{bench}:sig:s__rand_int__')
  if grep -qF 'ARGV[13 + 5' "$2"; then guard=("$slice"); extra=('' '' s__rand_int__); fi
  for ((i = 0; i < $1; i++)); do
    keys+=('fg:{bench}:win:u__rand_int__' "${guard[@]}")
    args+=(u__rand_int__ o__rand_int__ "${extra[@]}")
  done
  printf '%s\0' EVALSHA SCRIPT $((6 + 2 * $1)) 'fg:{bench}:stock' 'fg:{bench}:orders' 'fg:{bench}:status' \
    'fg:{bench}:outbox' 'fg:{bench}:stats' 'fg:{bench}:given_back' "${keys[@]}" \
    "$(date +%s)000" 1000 1 bench 65000 99999999999999 "${split[@]}" "${args[@]}"
}
# Instructions per call of reserve.lua in file $1 with $2 attempts per call, over about
# CALLS attempts in all.
reserve_instructions() { # name file attempts
  local call
  mapfile -d '' call < <(reserve_call "$3" "$2")
  SCRIPT_FILE=$2 instructions "$1" $(((CALLS + $3 - 1) / $3)) "${call[@]}"
}

# Takes the reserve call's arguments, as reserve.lua's (ARGV[13 + 5 * i] the signature;
# reserve_call reads the layout from that), and returns.
printf -- '-- ARGV[13 + 5 * i]\nreturn 1\n' >"$WORK/bare.lua"
script="$ROOT/origin/src/redis/lua/reserve.lua"
say "callgrind: $CALLS calls of a bare script"
bare=$(reserve_instructions bare "$WORK/bare.lua" 1)
say "callgrind: $CALLS calls of reserve.lua"
now=$(reserve_instructions reserve "$script" 1)
bench_record "Redis instructions per reserve call (callgrind)" "$now" instr "$bare" ""
# The original design's reservation: one DECR per purchase (infra/bench/peer).
say "callgrind: $CALLS DECR calls (the peer's reservation)"
decr=$(instructions decr "$CALLS" DECR 'peer:{bench}:stock')
bench_record "Redis instructions per DECR call (the peer's reservation)" "$decr" instr "" ""
# Per reservation at the batch sizes the coalescer makes under load (`./dev bench origin`
# and `peer` report them): the target is the peer's DECR.
declare -A per_reservation_at
for n in ${BENCH_SCRIPT_BATCHES:-4 16 64}; do
  say "callgrind: reserve.lua with $n attempts per call, $CALLS attempts"
  per_call=$(reserve_instructions "reserve-$n" "$script" "$n")
  per_reservation=$((per_call / n))
  per_reservation_at[$n]=$per_reservation
  bench_record "Redis instructions per reservation, $n attempts per call" "$per_reservation" instr "$decr" "<=1.0"
done
# What any reservation script pays per attempt before it decides anything, in calls of the
# largest batch size: taking in an attempt's arguments (a script that only returns), and
# that with the three checks each attempt needs whatever else it does (the replay guard's
# SADD, the buyer's order, the window). The target above is out of reach where these alone
# pass a DECR.
largest=$(printf '%s\n' ${BENCH_SCRIPT_BATCHES:-4 16 64} | sort -n | tail -1)
if [ -n "$largest" ]; then
  cat >"$WORK/checks.lua" <<'LUA'
for i = 0, (#ARGV - 8) / 5 - 1 do
  redis.call('SADD', KEYS[8 + 2 * i], ARGV[13 + 5 * i])
  redis.call('HGET', KEYS[2], ARGV[9 + 5 * i])
  redis.call('GET', KEYS[7 + 2 * i])
end
return 1
LUA
  say "callgrind: a script that only returns, $largest attempts' arguments per call"
  per_call=$(reserve_instructions "bare-$largest" "$WORK/bare.lua" "$largest")
  bench_record "Redis instructions per attempt, $largest per call, its arguments alone (a script that returns)" \
    $((per_call / largest)) instr "$decr" ""
  say "callgrind: the three checks alone, $largest attempts per call"
  per_call=$(reserve_instructions "checks-$largest" "$WORK/checks.lua" "$largest")
  bench_record "Redis instructions per attempt, $largest per call, its arguments and three checks alone" \
    $((per_call / largest)) instr "$decr" ""
fi
# The consumer's confirmation, per order of a batch: Redis's other work per purchase.
say "callgrind: confirm_many.lua, batches of 500 orders"
confirmed=$(confirm_instructions confirm "$ROOT/origin/src/redis/lua/confirm_many.lua")
bench_record "Redis instructions per order confirmed (consumer batch of 500)" "$confirmed" instr "" ""
if [ -n "${BENCH_SCRIPT_BASE:-}" ]; then
  # The script moved to origin/src/redis/lua/ on 2026-12-02; older revisions have it in src/lua/.
  git -C "$ROOT" show "$BENCH_SCRIPT_BASE:origin/src/redis/lua/reserve.lua" >"$WORK/base.lua" 2>/dev/null \
    || git -C "$ROOT" show "$BENCH_SCRIPT_BASE:origin/src/lua/reserve.lua" >"$WORK/base.lua"
  say "callgrind: $CALLS calls of reserve.lua at $BENCH_SCRIPT_BASE"
  base=$(reserve_instructions base "$WORK/base.lua" 1)
  bench_record "Redis instructions per reserve call, against reserve.lua at $BENCH_SCRIPT_BASE" "$now" instr "$base" ""
  for n in ${BENCH_SCRIPT_BATCHES:-4 16 64}; do
    say "callgrind: reserve.lua at $BENCH_SCRIPT_BASE, $n attempts per call"
    base=$(reserve_instructions "base-$n" "$WORK/base.lua" "$n")
    bench_record \
      "Redis instructions per reservation, $n attempts per call, against reserve.lua at $BENCH_SCRIPT_BASE" \
      "${per_reservation_at[$n]}" instr $((base / n)) ""
  done
  git -C "$ROOT" show "$BENCH_SCRIPT_BASE:origin/src/redis/lua/confirm_many.lua" >"$WORK/base-confirm.lua" 2>/dev/null \
    || git -C "$ROOT" show "$BENCH_SCRIPT_BASE:origin/src/lua/confirm_many.lua" >"$WORK/base-confirm.lua"
  say "callgrind: confirm_many.lua at $BENCH_SCRIPT_BASE, batches of 500 orders"
  base=$(confirm_instructions base-confirm "$WORK/base-confirm.lua")
  bench_record "Redis instructions per order confirmed, against confirm_many.lua at $BENCH_SCRIPT_BASE" \
    "$confirmed" instr "$base" ""
fi
