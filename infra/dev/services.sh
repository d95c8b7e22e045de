# Starting and stopping the backing services on loopback (sourced by ./dev).
# Each service runs as a child with its output in $DIR/logs and its own PID in $DIR/run.

. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

die() { printf 'dev: %s\n' "$*" >&2; exit 1; }

wait_for() { # what seconds command...
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what did not become ready in ${secs}s (see logs)"
    sleep 0.2
  done
}

running() { # name -> true when its PID file names a live process
  local f="$DIR/run/$1.pid"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

spawn() { # name workdir command... : start in background, record the daemon's own PID
  local name=$1 wd=$2; shift 2
  mkdir -p "$DIR/run" "$DIR/logs"
  ( cd "$wd" && exec setsid "$@" ) </dev/null >>"$DIR/logs/$name.log" 2>&1 &
  echo $! >"$DIR/run/$name.pid"
  # Not this shell's job: a kill -9 (the chaos drill) is not reported on its terminal.
  disown $! 2>/dev/null || true
}

need_port() { port_open "$1" && die "port $1 ($2) is already taken; stop what uses it or run ./dev down"; return 0; }

start_redis() { # port
  running redis && return 0
  need_port "$1" redis
  mkdir -p "$DIR/data/redis"
  spawn redis "$DIR/data/redis" redis-server --bind 127.0.0.1 --port "$1" --dir "$DIR/data/redis" \
    --appendonly yes --save '' --daemonize no --protected-mode yes
  wait_for redis 30 redis-cli -p "$1" ping
}

start_mariadb() { # port
  running mariadb && return 0
  need_port "$1" mariadb
  local d="$DIR/data/mariadb"
  mkdir -p "$d/run"
  if [ ! -d "$d/data/mysql" ]; then
    mariadb-install-db --no-defaults --user=root --datadir="$d/data" \
      --auth-root-authentication-method=normal --skip-test-db >>"$DIR/logs/mariadb.log" 2>&1 \
      || die "mariadb-install-db failed (see $DIR/logs/mariadb.log)"
  fi
  spawn mariadb "$d" mariadbd --no-defaults --user=root --datadir="$d/data" --socket="$d/run/mysqld.sock" \
    --pid-file="$d/run/mysqld.pid" --port="$1" --bind-address=127.0.0.1 --skip-name-resolve \
    --innodb-buffer-pool-size=256M --max-connections=500
  wait_for mariadb 120 mariadb-admin --no-defaults -h127.0.0.1 -P"$1" -uroot ping
}

mysql_exec() { # port sql
  mariadb --no-defaults -h127.0.0.1 -P"$1" -uroot -e "$2"
}

start_kafka() { # port
  running kafka && return 0
  need_port "$1" kafka
  mkdir -p "$DIR/data/kafka"
  spawn kafka "$DIR/data/kafka" "$FG_TANSU_ROOT/bin/tansu" broker \
    --listener-url "tcp://127.0.0.1:$1" --advertised-listener-url "tcp://127.0.0.1:$1" \
    --storage-engine sqlite://tansu.db
  wait_for kafka 60 port_open "$1"
}

stop_one() { # name: stop the service whose PID file is $DIR/run/NAME.pid
  local f="$DIR/run/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    # Each service leads its own process group (setsid), so wrangler's workerd goes too.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

stop_all() { # stop everything with a PID file under $DIR/run, newest first
  local name
  [ -d "$DIR/run" ] || return 0
  for name in edge consume serve kafka mariadb redis-replica redis; do stop_one "$name"; done
  stop_redis_cluster
}

# The stack's settings file: dir redis mysql kafka origin edge consumer (ports); secrets
# are made once per dir and kept. The stack runs as in the middle of a rotation
# (docs/runbook.md, "Rotating a secret"): the edge and the origin also hold a previous
# AUTH_SECRET and EDGE_SECRET, so what was signed under them is tested to pass.
write_env() { # dir redis mysql kafka origin edge consumer
  local dir=$1 secrets="$1/secrets" name
  if [ ! -f "$secrets" ]; then
    (umask 077
      { echo "AUTH_SECRET=$(openssl rand -hex 24)"; echo "EDGE_SECRET=$(openssl rand -hex 24)"
        echo "ADMIN_TOKEN=$(openssl rand -hex 24)"; } >"$secrets")
  fi
  for name in AUTH_SECRET_PREVIOUS EDGE_SECRET_PREVIOUS; do
    grep -q "^$name=" "$secrets" || echo "$name=$(openssl rand -hex 24)" >>"$secrets"
  done
  # The file holds the secrets: readable by its owner only.
  (umask 077; { echo "EDGE_URL=http://127.0.0.1:$6"; echo "ORIGIN_URL=http://127.0.0.1:$5"
    echo "CONSUMER_URL=http://127.0.0.1:$7"
    echo "REDIS_URL=redis://127.0.0.1:$2"; echo "MYSQL_URL=mysql://root@127.0.0.1:$3/flashgate"
    echo "KAFKA_BROKERS=127.0.0.1:$4"; echo "ORDERS_TOPIC=flashgate.orders"
    cat "$secrets"
    echo "REDIS_PORT=$2"; echo "MYSQL_PORT=$3"; echo "KAFKA_PORT=$4"; echo "ORIGIN_PORT=$5"; echo "EDGE_PORT=$6"
    echo "CONSUMER_PORT=$7"
  } >"$dir/env")
  chmod 600 "$dir/env"
}

# The edge's settings for `wrangler dev --env-file` (secrets stay off command lines,
# where `ps` shows them to every user): writes $1/edge.vars, readable by its owner only.
edge_vars() { # dir
  (umask 077; printf 'ORIGIN_URL=%s\nAUTH_SECRET=%s\nAUTH_SECRET_PREVIOUS=%s\nEDGE_SECRET=%s\nEDGE_SECRET_PREVIOUS=%s\n' \
    "$ORIGIN_URL" "$AUTH_SECRET" "$AUTH_SECRET_PREVIOUS" "$EDGE_SECRET" "$EDGE_SECRET_PREVIOUS" >"$1/edge.vars")
  echo "$1/edge.vars"
}

# The admin token as a header line for `curl -H @<(admin_header)`: not on the command line.
admin_header() { printf 'authorization: Bearer %s\n' "$ADMIN_TOKEN"; }

start_services() {
  set -a; . "$DIR/env"; set +a
  start_redis "$REDIS_PORT"
  start_mariadb "$MYSQL_PORT"
  mysql_exec "$MYSQL_PORT" "CREATE DATABASE IF NOT EXISTS flashgate"
  start_kafka "$KAFKA_PORT"
}
