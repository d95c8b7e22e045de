# Helpers for ./dev bench and its suites (sourced). A suite is infra/bench/<suite>.sh, run
# with bash after run.sh has started Redis, MariaDB and the broker of a throwaway stack;
# it finds the stack's settings exported (EDGE_URL, ORIGIN_URL, REDIS_PORT, MYSQL_PORT,
# KAFKA_BROKERS, AUTH_SECRET, EDGE_SECRET, ADMIN_TOKEN, ORDERS_TOPIC, DIR) and:
#
#   . "$ROOT/infra/bench/lib.sh"
#   bench_migrate [ENV=value...]        migrations and the orders topic (e.g. a topic of its own)
#   bench_start_origin [ENV=value...]   release `flashgate serve` (ENV: extra FLASHGATE_* settings)
#   bench_start_consumer [ENV=value...] release `flashgate consume`
#   bench_start_edge [VAR=value...]     wrangler dev on the built worker (no rebuild on edits;
#                                       VAR: extra worker vars, e.g. ROOM_ENABLED=true)
#   bench_stop NAME                     stop one of them (serve, consume, edge)
#   bench_record NAME VALUE UNIT FLOOR TARGET   append one row of the report (see below)
#   bench_wasm_size                     the release wasm (built when missing): WASM, WASM_RAW, WASM_GZ
#   bench_criterion BENCH SECONDS       run core's criterion bench BENCH (core/benches/BENCH.rs)
#   bench_median_us NAME / bench_median_ms NAME   a criterion bench's median
#
# A row: FLOOR is the comparable figure measured in the same run ("" when none); TARGET is
# "" (no target), ">=X" or "<=X" on the ratio value/floor when there is a floor, or
# "<X" / ">X" on the value itself (e.g. "<20" ms). run.sh turns rows into the table,
# target/bench/report.md and target/bench/report.json.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
. "$ROOT/infra/versions.env"
. "$ROOT/infra/dev/paths.sh"
# shellcheck source=../dev/services.sh
. "$ROOT/infra/dev/services.sh"

# The run's output dir (run.sh sets it inside the stack dir; copied to target/bench at the end).
BENCH_OUT=${BENCH_OUT:-$ROOT/target/bench}
BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/flashgate}
BENCH_LOAD=${BENCH_LOAD:-$ROOT/target/loadgen/release/fg-load}
K6="$FG_K6_ROOT/bin/k6"
export K6_NO_USAGE_REPORT=true

say() { printf '[bench] %s\n' "$*" >&2; }

bench_app_env() {
  export FLASHGATE_LISTEN="127.0.0.1:$ORIGIN_PORT" FLASHGATE_REDIS_URL="$REDIS_URL" \
    FLASHGATE_MYSQL_URL="$MYSQL_URL" FLASHGATE_KAFKA_BROKERS="$KAFKA_BROKERS" \
    FLASHGATE_ORDERS_TOPIC="$ORDERS_TOPIC" FLASHGATE_AUTH_SECRET="$AUTH_SECRET" \
    FLASHGATE_EDGE_SECRET="$EDGE_SECRET" FLASHGATE_ADMIN_TOKEN="$ADMIN_TOKEN" RUST_LOG=${RUST_LOG:-warn}
}

bench_migrate() { # [ENV=value...]
  (bench_app_env; for kv in "$@"; do export "${kv?}"; done; "$BENCH_BIN" migrate >>"$DIR/logs/migrate.log" 2>&1) \
    || { tail -5 "$DIR/logs/migrate.log" >&2; die "migrate failed"; }
}

bench_start_origin() { # [ENV=value...]
  running serve && return 0
  need_port "$ORIGIN_PORT" origin
  (bench_app_env; for kv in "$@"; do export "${kv?}"; done; spawn serve "$ROOT" "$BENCH_BIN" serve)
  wait_for origin 30 curl -fsS "$ORIGIN_URL/healthz"
}

bench_start_consumer() { # [ENV=value...]
  running consume && return 0
  (bench_app_env; for kv in "$@"; do export "${kv?}"; done; spawn consume "$ROOT" "$BENCH_BIN" consume)
}

# wrangler dev on a copy of the built worker and the static files, from a config without
# the [build] step: edits to edge/, core/ or static/ by others during a run change nothing.
# Each VAR=value goes to the worker's vars file, over wrangler.toml's [vars].
bench_start_edge() { # [VAR=value...]
  running edge && return 0
  need_port "$EDGE_PORT" edge
  [ -f "$ROOT/edge/build/index.js" ] || die "no built worker in edge/build (bash infra/edge/build.sh)"
  rm -rf "$DIR/edge" && mkdir -p "$DIR/edge"
  cp -r "$ROOT/edge/build" "$DIR/edge/build"
  cp -r "$ROOT/static" "$DIR/edge/static"
  python3 - "$ROOT/wrangler.toml" "$DIR/edge/wrangler.toml" <<'PY'
import re, sys
src = open(sys.argv[1], encoding="utf-8").read()
# Drop the [build] table (command and watch_dir); point main and assets at the copies.
src = re.sub(r"(?ms)^\[build\]\n.*?(?=^\[|\Z)", "", src)
src = re.sub(r'(?m)^main\s*=.*$', 'main = "build/index.js"', src)
src = re.sub(r'(?m)^directory\s*=.*$', 'directory = "./static"', src)
open(sys.argv[2], "w", encoding="utf-8").write(src)
PY
  local vars
  vars=$(edge_vars "$DIR")
  for kv in "$@"; do printf '%s\n' "${kv?}" >>"$vars"; done
  spawn edge "$DIR/edge" bash -c ". '$ROOT/infra/edge/env.sh' && exec wrangler dev --local --ip 127.0.0.1 \
    --port $EDGE_PORT --config '$DIR/edge/wrangler.toml' --persist-to '$DIR/wrangler' \
    --show-interactive-dev-session=false --log-level warn \
    --env-file '$vars'"
  wait_for "edge worker (wrangler dev)" 180 curl -fsS "$EDGE_URL/"
}

bench_stop() { stop_one "$1"; } # name

# The release wasm of the edge, built when missing: sets WASM (its path), WASM_RAW and
# WASM_GZ (bytes, raw and gzip -9).
bench_wasm_size() {
  WASM="$ROOT/edge/build/index_bg.wasm"
  if [ ! -f "$WASM" ]; then
    say "building the edge worker"
    bash "$ROOT/infra/edge/build.sh" >"$DIR/logs/edge-build.log" 2>&1 \
      || { tail -20 "$DIR/logs/edge-build.log" >&2; die "edge build failed"; }
  fi
  WASM_RAW=$(stat -c %s "$WASM")
  WASM_GZ=$(gzip -9c "$WASM" | wc -c)
}

# Bytes to KiB, one decimal.
bench_kib() { python3 -c "print(round($1 / 1024, 1))"; }

# Runs core's criterion bench BENCH (core/benches/BENCH.rs) for SECONDS measured per
# function, after a second of warm-up; its log goes to $DIR/logs/criterion-BENCH.log.
bench_criterion() { # bench seconds
  (cd "$ROOT" && cargo bench -q -p flashgate-core --bench "$1" -- \
    --warm-up-time 1 --measurement-time "$2" >"$DIR/logs/criterion-$1.log" 2>&1) \
    || { tail -20 "$DIR/logs/criterion-$1.log" >&2; die "cargo bench $1 failed"; }
}

# The median of a criterion bench function (target/criterion/NAME/new/estimates.json).
bench_median_us() { bench_median "$1" 1000 3; }
bench_median_ms() { bench_median "$1" 1000000 2; }
bench_median() { # name ns-per-unit digits
  python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['median']['point_estimate'] / $2, $3))" \
    "$ROOT/target/criterion/$1/new/estimates.json"
}

bench_pid() { cat "$DIR/run/$1.pid"; }

# Peak resident memory (VmHWM) of a process, in MiB.
bench_peak_rss_mb() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

bench_record() { # name value unit floor target
  python3 - "$@" >>"$BENCH_OUT/results.jsonl" <<'PY'
import json, sys
name, value, unit, floor, target = sys.argv[1:6]
num = lambda s: None if s in ("", "null", "None") else float(s)
v, f = num(value), num(floor)
ratio = round(v / f, 3) if v is not None and f not in (None, 0) else None
met = None
if target and v is not None:
    op, x = (target[:2], float(target[2:])) if target[:2] in (">=", "<=") else (target[:1], float(target[1:]))
    subject = ratio if (op in (">=", "<=") and f is not None) else v
    if subject is not None:
        met = {">=": subject >= x, "<=": subject <= x, ">": subject > x, "<": subject < x}[op]
print(json.dumps({"name": name, "value": v, "unit": unit, "floor": f, "ratio": ratio,
                  "target": target or None, "met": met}, ensure_ascii=False))
PY
}

# An event through the admin API: id stock starts_in_s ends_in_s [more spec fields, as ',"k":v']
bench_put_event() {
  local now starts ends code
  now=$(date +%s)
  starts=$(date -u -d "@$((now + $3))" +%Y-%m-%dT%H:%M:%SZ)
  ends=$(date -u -d "@$((now + $4))" +%Y-%m-%dT%H:%M:%SZ)
  code=$(curl -s -o "$DIR/logs/put-$1.json" -w '%{http_code}' -X PUT "$ORIGIN_URL/admin/events/$1" \
    -H @<(admin_header) -H 'content-type: application/json' \
    -d "{\"name\":\"bench $1\",\"stock\":$2,\"starts_at\":\"$starts\",\"ends_at\":\"$ends\"${5:-}}")
  case $code in 200 | 201) ;; *) die "creating event $1: HTTP $code $(cat "$DIR/logs/put-$1.json")" ;; esac
}

# A JSON field of a file: json_get FILE KEY[.KEY...]
json_get() {
  python3 -c 'import json,sys
v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)' "$1" "$2"
}
