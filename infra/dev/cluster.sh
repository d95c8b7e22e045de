# A local Redis Cluster on loopback: 3 masters, 3 replicas (sourced by services.sh).
# Each node runs like the stack's Redis, as a child with its PID in $DIR/run.

CLUSTER_NODES=6

# Starts the cluster on free ports (each node's bus port too, `cluster-port`), waits until
# every node says cluster_state:ok, and sets REDIS_CLUSTER_URLS to its nodes' URLs.
start_redis_cluster() {
  local i port bus d hosts=() urls=() ports
  # Two distinct free ports per node, found in one go.
  read -r -a ports < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2 * '"$CLUSTER_NODES"')]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
  for i in $(seq 0 $((CLUSTER_NODES - 1))); do
    port=${ports[$((2 * i))]}; bus=${ports[$((2 * i + 1))]}
    d="$DIR/data/redis-cluster-$i"
    mkdir -p "$d"
    spawn "redis-cluster-$i" "$d" redis-server --bind 127.0.0.1 --port "$port" --cluster-port "$bus" \
      --dir "$d" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
      --appendonly yes --save '' --daemonize no --protected-mode yes --repl-diskless-sync-delay 0
    hosts+=("127.0.0.1:$port"); urls+=("redis://127.0.0.1:$port")
  done
  for i in "${hosts[@]}"; do wait_for "redis cluster node $i" 30 redis-cli -p "${i#*:}" ping; done
  redis-cli --cluster create "${hosts[@]}" --cluster-replicas 1 --cluster-yes \
    >>"$DIR/logs/redis-cluster.log" 2>&1 || die "redis-cli --cluster create failed (see $DIR/logs/redis-cluster.log)"
  for i in "${hosts[@]}"; do wait_for "redis cluster at $i" 30 cluster_ok "${i#*:}"; done
  REDIS_CLUSTER_URLS=$(IFS=,; echo "${urls[*]}")
  export REDIS_CLUSTER_URLS
}

cluster_ok() { # port: the node sees the whole cluster up, and a replica has its master's data
  redis-cli -p "$1" cluster info | grep -q '^cluster_state:ok' || return 1
  redis-cli -p "$1" info replication | grep -q '^role:master' \
    || redis-cli -p "$1" info replication | grep -q '^master_link_status:up'
}

stop_redis_cluster() {
  local i
  for i in $(seq 0 $((CLUSTER_NODES - 1))); do stop_one "redis-cluster-$i"; done
}
