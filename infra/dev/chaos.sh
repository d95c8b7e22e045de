# The chaos drill (sourced by ./dev; `./dev chaos`, and the last step of `./dev test`).
#
# Buyers arrive through the edge at a steady pace (infra/k6/chaos.js, each a user of its
# own) while every part behind the edge is hurt in turn and brought back as a supervisor
# would: the origin killed (-9) and stopped (SIGTERM), Redis frozen and killed, the broker
# killed, the consumer killed, MariaDB killed. After each step the drill waits for a
# purchase through the edge, by a user of its own on an event of its own, to be answered
# 202 again, without help, and logs how long that took. When the buyers are done it
# checks the contract's invariants in Redis, MariaDB and the admin stats
# (infra/k6/check-invariants.py) for both events: no oversell, no user twice, every 202
# one row, nothing pending. Every answer a buyer saw must be one the contract documents
# (503 busy while a part is down is one). Redis runs with `appendfsync always` during the
# drill (see run_chaos).
#
# Runs in the shell that started the stack (start_services, start_apps): it needs $DIR,
# the stack's env and the FLASHGATE_* settings start_apps exported, to restart what it
# kills. Settings: CHAOS_RATE (buyers/s, 15), CHAOS_SECONDS (how long they arrive, 90),
# CHAOS_HOLD_S (how long a part stays down, 3), CHAOS_GAP_S (quiet time between steps, 5).

chaos_log() { printf '[chaos %3ds] %s\n' "$((SECONDS - chaos_t0))" "$*" | tee -a "$DIR/logs/chaos.log"; }

crash() { # name: kill -9 the service's process group, as a machine or OOM kill would
  local f="$DIR/run/$1.pid" pid
  pid=$(cat "$f")
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$f"
}

graceful_stop() { # name: SIGTERM, and it must exit by itself within 20 s
  local f="$DIR/run/$1.pid" pid i
  pid=$(cat "$f")
  kill -TERM "$pid"
  for i in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$f"; return 0; }
    sleep 0.1
  done
  chaos_log "FAIL: $1 did not stop within 20 s of SIGTERM"
  crash "$1"
  return 1
}

# A Redis process killed with appendfsync everysec (the default) can lose the writes of a
# moment when a slow disk held back its background fsync (docs/operations.md); with
# always, every write it answered is on disk, and the drill can hold it to that.
redis_fsync_always() {
  redis-cli -p "$REDIS_PORT" CONFIG SET appendfsync always | grep -qx OK \
    || { chaos_log "FAIL: cannot set appendfsync always on Redis"; return 1; }
}

restart_redis() {
  start_redis "$REDIS_PORT" && redis_fsync_always
}

# One purchase through the edge by the next probe user, on the probe event: a ticket, then
# the purchase. Prints the purchase's HTTP status (000 when there was none).
probe_once() { # user-index
  local token ticket ua='Mozilla/5.0 (X11; Linux x86_64) flashgate-chaos/1'
  token=$(sed -n "$(($1 + 1))p" "$DIR/chaos-probe.csv" | cut -d, -f2)
  ticket=$(curl -s --max-time 5 -X POST -H "authorization: Bearer $token" -H "user-agent: $ua" \
    -H 'content-type: application/json' -d '{}' "$EDGE_URL/api/events/$chaos_probe/ticket" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin).get("ticket", ""))' 2>/dev/null) || ticket=""
  [ -n "$ticket" ] || { echo 000; return 0; }
  curl -s --max-time 5 -o /dev/null -w '%{http_code}' -X POST -H "authorization: Bearer $token" \
    -H "user-agent: $ua" -H "x-ticket: $ticket" -H 'content-type: application/json' -d '{}' \
    "$EDGE_URL/api/events/$chaos_probe/purchase" || true
}

# Waits (at most 90 s) until a new probe user's purchase is answered 202 (200: an earlier
# try of the same user was reserved though its answer was lost); a purchase path that
# does not come back by itself fails the drill. /readyz alone is not enough: it once said
# ready while every purchase was 503.
recovered() { # what
  local start=$SECONDS code
  chaos_probes=$((chaos_probes + 1))
  while :; do
    code=$(probe_once "$chaos_probes")
    case $code in 202 | 200) break ;; esac
    if [ $((SECONDS - start)) -ge 90 ]; then
      chaos_log "FAIL: purchases not answered 202 within 90 s of $1 (last: $code)"
      return 1
    fi
    sleep 1
  done
  chaos_log "purchases answered again $((SECONDS - start)) s after $1"
}

chaos_step() { # description inject restore
  chaos_log "$1"
  eval "$2" || return 1
  sleep "${CHAOS_HOLD_S:-3}"
  eval "$3" || return 1
  recovered "$1" || return 1
  sleep "${CHAOS_GAP_S:-5}"
}

# Stops the buyers' load (k6 and its runner), when the drill ends early.
stop_chaos_load() {
  [ -n "${CHAOS_LOAD_PID:-}" ] || return 0
  kill -TERM -- "-$CHAOS_LOAD_PID" 2>/dev/null || true
  CHAOS_LOAD_PID=""
}

run_chaos() {
  local event out status=0 seconds=${CHAOS_SECONDS:-90}
  chaos_t0=$SECONDS
  chaos_probes=0
  event="chaos-$(date +%s)"
  chaos_probe="$event-probe"
  out="$DIR/logs/k6-chaos"
  mkdir -p "$out"
  : >"$DIR/logs/chaos.log"
  redis_fsync_always || return 1
  # The probe event: stock for every probe, started now (an event is created before its
  # start, so it starts two seconds from now).
  local starts ends code
  starts=$(date -u -d '+2 seconds' +%Y-%m-%dT%H:%M:%SZ)
  ends=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$ORIGIN_URL/admin/events/$chaos_probe" \
    -H @<(admin_header) -H 'content-type: application/json' \
    -d "{\"name\":\"chaos probe\",\"stock\":1000,\"starts_at\":\"$starts\",\"ends_at\":\"$ends\"}") || true
  [ "$code" = 201 ] || { chaos_log "FAIL: creating the probe event: HTTP $code"; return 1; }
  FLASHGATE_AUTH_SECRET="$AUTH_SECRET" "$ROOT/target/debug/flashgate" users --count 100 \
    --prefix chaosprobe --out "$DIR/chaos-probe.csv" >/dev/null \
    || { chaos_log "FAIL: cannot write the probe users"; return 1; }
  # Buyers retry a 503 for longer than a part stays down; latency is not what this
  # measures, correctness is. The invariants are checked here, after the last step.
  EVENT=$event PURCHASE_TRIES=${PURCHASE_TRIES:-12} P99_MS=${P99_MS:-5000} REQUEST_TIMEOUT=15s \
    CHAOS_RATE=${CHAOS_RATE:-15} CHAOS_SECONDS=$seconds \
    setsid bash "$ROOT/infra/k6/run.sh" chaos --out "$out" --no-check >"$out/run.log" 2>&1 &
  CHAOS_LOAD_PID=$!
  local load=$CHAOS_LOAD_PID
  # The first step waits for buyers: the event's stock is in Redis once k6's setup ran.
  local deadline=$((SECONDS + 60))
  until [ -n "$(redis-cli -p "$REDIS_PORT" --raw EXISTS "fg:{$event}:stock" 2>/dev/null | grep -x 1)" ]; do
    if ! kill -0 "$load" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      cat "$out/run.log"
      chaos_log "FAIL: the load did not start"
      stop_chaos_load
      return 1
    fi
    sleep 0.2
  done
  local arrivals_end=$((SECONDS + seconds))
  recovered "the start" || { stop_chaos_load; return 1; }
  chaos_log "buyers arriving (event $event, probes on $chaos_probe, output in $out)"
  local redis_pid
  {
    chaos_step "origin: kill -9, back after ${CHAOS_HOLD_S:-3} s" "crash serve" spawn_origin \
      && chaos_step "origin: SIGTERM (drains and flushes its relay), back at once" \
        "graceful_stop serve" spawn_origin \
      && redis_pid=$(cat "$DIR/run/redis.pid") \
      && chaos_step "Redis: frozen (SIGSTOP), thawed" "kill -STOP $redis_pid" "kill -CONT $redis_pid" \
      && chaos_step "Redis: kill -9, restarted on its AOF" "crash redis" restart_redis \
      && chaos_step "broker: kill -9, restarted" "crash kafka" 'start_kafka "$KAFKA_PORT"' \
      && chaos_step "consumer: kill -9, restarted" "crash consume" spawn_consumer \
      && chaos_step "MariaDB: kill -9, restarted (crash recovery)" "crash mariadb" 'start_mariadb "$MYSQL_PORT"'
  } || status=1
  [ $SECONDS -le "$arrivals_end" ] \
    || chaos_log "warning: the buyers stopped arriving before the last step ended (CHAOS_SECONDS=$seconds)"
  if [ $status -ne 0 ]; then
    stop_chaos_load
  else
    chaos_log "faults done; waiting for the buyers, then the invariants"
  fi
  wait "$load" || status=1
  CHAOS_LOAD_PID=""
  cat "$out/run.log"
  if [ $status -eq 0 ]; then
    DRAIN_S=${DRAIN_S:-120} python3 "$ROOT/infra/k6/check-invariants.py" --event "$event" \
      --summary "$out/summary.json" --stock-samples "$out/stock-samples" || status=1
    DRAIN_S=${DRAIN_S:-120} python3 "$ROOT/infra/k6/check-invariants.py" --event "$chaos_probe" \
      || status=1
  fi
  if [ $status -eq 0 ]; then
    chaos_log "passed: purchases came back after every step, every answer documented, every invariant held"
  else
    chaos_log "FAILED (the stack's logs and the load's output are copied to target/<what>-logs)"
  fi
  return $status
}
