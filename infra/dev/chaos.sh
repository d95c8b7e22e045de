# The chaos drill (sourced by ./dev; `./dev chaos`, and the last step of `./dev test`).
#
# Buyers arrive through the edge at a steady pace (infra/k6/chaos.js, each a user of its
# own) while every part behind the edge is hurt in turn and brought back as a supervisor
# would: the origin killed (-9) and stopped (SIGTERM), Redis frozen and killed, the broker
# killed, the consumer killed, MariaDB killed. After each step the drill waits for the
# origin to say it is ready again, without help, and logs how long that took. When the
# buyers are done it checks the contract's invariants in Redis, MariaDB and the admin
# stats (infra/k6/check-invariants.py, through infra/k6/run.sh): no oversell, no user
# twice, every 202 one row, nothing pending. Every answer a buyer saw must be one the
# contract documents (503 busy while a part is down is one). Redis runs with
# `appendfsync always` during the drill (see run_chaos).
#
# Runs in the shell that started the stack (start_services, start_apps): it needs $DIR,
# the stack's env and the FLASHGATE_* settings start_apps exported, to restart what it
# kills. Settings: CHAOS_RATE (buyers/s, 30), CHAOS_SECONDS (how long they arrive, 75),
# CHAOS_HOLD_S (how long a part stays down, 3), CHAOS_GAP_S (quiet time between steps, 5).

chaos_log() { printf '[chaos %3ds] %s\n' "$((SECONDS - chaos_t0))" "$*" | tee -a "$DIR/logs/chaos.log"; }

crash() { # name: kill -9 the service's process group, as a machine or OOM kill would
  local f="$DIR/run/$1.pid" pid
  pid=$(cat "$f")
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$f"
}

restart_origin() {
  spawn serve "$ROOT" "$ROOT/target/debug/flashgate" serve
}

restart_consumer() {
  FLASHGATE_CONSUMER__LISTEN="127.0.0.1:$CONSUMER_PORT" spawn consume "$ROOT" "$ROOT/target/debug/flashgate" consume
}

origin_ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$ORIGIN_URL/readyz")" = 200 ]; }

# Waits (at most 90 s) for the origin to be ready and the consumer to answer again; a part
# that does not come back by itself fails the drill.
recovered() { # what
  local start=$SECONDS
  until origin_ready && curl -fs -o /dev/null --max-time 2 "$CONSUMER_URL/healthz"; do
    if [ $((SECONDS - start)) -ge 90 ]; then
      chaos_log "FAIL: not ready 90 s after $1"
      return 1
    fi
    sleep 0.2
  done
  chaos_log "ready again $((SECONDS - start)) s after $1"
}

chaos_step() { # description inject restore
  chaos_log "$1"
  eval "$2"
  sleep "${CHAOS_HOLD_S:-3}"
  eval "$3"
  recovered "$1" || return 1
  sleep "${CHAOS_GAP_S:-5}"
}

run_chaos() {
  local event out load status=0
  chaos_t0=$SECONDS
  event="chaos-$(date +%s)"
  out="$DIR/chaos"
  mkdir -p "$out"
  : >"$DIR/logs/chaos.log"
  # A Redis process killed with appendfsync everysec (the default) can lose the writes
  # of a moment when a slow disk held back its background fsync (docs/operations.md);
  # with always, every write it answered is on disk, and the drill can hold it to that.
  redis-cli -p "$REDIS_PORT" CONFIG SET appendfsync always >/dev/null
  # Buyers retry a 503 for longer than a part stays down; latency is not what this
  # measures, correctness is.
  EVENT=$event PURCHASE_TRIES=${PURCHASE_TRIES:-12} P99_MS=${P99_MS:-5000} REQUEST_TIMEOUT=15s \
    CHAOS_RATE=${CHAOS_RATE:-30} CHAOS_SECONDS=${CHAOS_SECONDS:-75} DRAIN_S=${DRAIN_S:-120} \
    bash "$ROOT/infra/k6/run.sh" chaos --out "$out" >"$out/run.log" 2>&1 &
  load=$!
  # The first step waits for buyers: the event's stock is in Redis once k6's setup ran.
  local deadline=$((SECONDS + 60))
  until [ -n "$(redis-cli -p "$REDIS_PORT" --raw EXISTS "fg:{$event}:stock" 2>/dev/null | grep -x 1)" ]; do
    kill -0 "$load" 2>/dev/null && [ $SECONDS -lt $deadline ] || { cat "$out/run.log"; chaos_log "FAIL: the load did not start"; return 1; }
    sleep 0.2
  done
  sleep 3
  chaos_log "buyers arriving (event $event, output in $out)"
  local redis_pid
  {
    chaos_step "origin: kill -9, back after ${CHAOS_HOLD_S:-3} s" "crash serve" restart_origin \
      && chaos_step "origin: SIGTERM (drains and flushes its relay), back at once" \
        "stop_one serve" restart_origin \
      && redis_pid=$(cat "$DIR/run/redis.pid") \
      && chaos_step "Redis: frozen (SIGSTOP), thawed" "kill -STOP $redis_pid" "kill -CONT $redis_pid" \
      && chaos_step "Redis: kill -9, restarted on its AOF" "crash redis" 'start_redis "$REDIS_PORT"' \
      && chaos_step "broker: kill -9, restarted" "crash kafka" 'start_kafka "$KAFKA_PORT"' \
      && chaos_step "consumer: kill -9, restarted" "crash consume" restart_consumer \
      && chaos_step "MariaDB: kill -9, restarted (crash recovery)" "crash mariadb" 'start_mariadb "$MYSQL_PORT"'
  } || status=1
  kill -0 "$load" 2>/dev/null || chaos_log "warning: the buyers had stopped before the last step"
  chaos_log "faults done; waiting for the buyers, then the invariants"
  wait "$load" || status=1
  cat "$out/run.log"
  if [ $status -eq 0 ]; then
    chaos_log "passed: every answer documented, every invariant held"
  else
    chaos_log "FAILED (logs in $DIR/logs, the load's output in $out)"
  fi
  return $status
}
