#!/usr/bin/env bash
# ClickHouse for tests and benchmarks (docs/clickhouse.md).
#
#   scripts/clickhouse.sh install          install Debian's clickhouse-server and -client (root, apt)
#   scripts/clickhouse.sh start DIR [N]    start N nodes (1 = single node, 2 = a 2-shard cluster
#                                          `spanline_2s`) as processes on free loopback ports,
#                                          each with its own config and data under DIR; prints
#                                          one line per node: `node I http://127.0.0.1:HTTP TCP PID`
#   scripts/clickhouse.sh start DIR N replicas ZK_HOST:PORT
#                                          N replicas of one shard instead: cluster `spanline_1s2r`
#                                          (internal_replication), ZooKeeper at ZK_HOST:PORT
#                                          (scripts/zookeeper.sh), macros shard=1, replica=rI
#   scripts/clickhouse.sh stop DIR [I]     stop the nodes started in DIR (or node I only), by
#                                          their recorded pids: SIGTERM, then SIGKILL after
#                                          CLICKHOUSE_STOP_GRACE_S seconds (default 10; an idle
#                                          keep-alive connection holds a server that long)
#   scripts/clickhouse.sh restart DIR I    start node I of DIR again on the same ports and data
#
# Ports: each node's HTTP, TCP and interserver ports are reserved by scripts/ports.py (left in
# TIME_WAIT, so no other program is handed them until the node binds them) and written to
# DIR/nodeI/ports as `HTTP TCP INTERSERVER`. A node is ready when its /ping answers "Ok." and
# its own process (the recorded pid) holds the HTTP and TCP listeners, so another server on
# the same port is never taken for it. When a node cannot take its ports (it exits with
# "Address already in use" in its log, or another process holds them), `start` stops the
# nodes of that try and starts them all again on new ports, up to CLICKHOUSE_START_ATTEMPTS
# tries (default 4); `restart` tries the same ports again that often, a second apart. Then
# it fails naming the node's log. Exit 1 on any failure (no node of a failed start is left
# running).
#
# Prints "clickhouse-server: missing" and exits 3 when the server is absent (start/restart).
set -euo pipefail

PORTS_PY="$(dirname "${BASH_SOURCE[0]}")/ports.py"
ATTEMPTS=${CLICKHOUSE_START_ATTEMPTS:-4}

server_bin() {
  command -v clickhouse-server 2>/dev/null || command -v clickhouse 2>/dev/null || true
}


install() {
  if [ -n "$(server_bin)" ]; then
    echo "clickhouse-server present: $(server_bin)"
    return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "clickhouse-server missing and not installable here (needs root and apt-get)" >&2
    return 1
  fi
  if ! apt-cache policy clickhouse-server 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    clickhouse-server clickhouse-client
}

# write_config DIR I HTTP TCP INTERSERVER CLUSTER_XML SHARD [ZK_HOST:PORT]
# Macros: {shard} = SHARD, {replica} = rI (what ReplicatedMergeTree paths use).
write_config() {
  local dir=$1 i=$2 http=$3 tcp=$4 inter=$5 cluster=$6 shard=$7 zk=${8:-}
  local zk_xml=""
  if [ -n "$zk" ]; then
    zk_xml="<zookeeper><node><host>${zk%:*}</host><port>${zk##*:}</port></node><session_timeout_ms>6000</session_timeout_ms></zookeeper>"
    zk_xml="$zk_xml<distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>"
  fi
  local node="$dir/node$i"
  mkdir -p "$node/data" "$node/tmp" "$node/log" "$node/user_files"
  cat >"$node/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$node/log/server.log</log><errorlog>$node/log/error.log</errorlog><size>10M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$http</http_port>
  <tcp_port>$tcp</tcp_port>
  <interserver_http_port>$inter</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <path>$node/data/</path>
  <tmp_path>$node/tmp/</tmp_path>
  <user_files_path>$node/user_files/</user_files_path>
  <format_schema_path>$node/format_schemas/</format_schema_path>
  <max_connections>256</max_connections>
  <keep_alive_timeout>30</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mark_cache_size>268435456</mark_cache_size>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage><log_queries>0</log_queries></default></profiles>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
  <remote_servers>$cluster</remote_servers>
  <macros><shard>$shard</shard><replica>r$i</replica></macros>
  $zk_xml
</yandex>
XML
}

# ping PORT: the body of GET /ping (ClickHouse answers "Ok."), or nothing.
ping() {
  python3 -c 'import sys, urllib.request
try: print(urllib.request.urlopen(sys.argv[1], timeout=1).read().decode().strip())
except Exception: pass' "http://127.0.0.1:$1/ping" 2>/dev/null || true
}

# port_trouble NODE_DIR: its logs say a port was taken.
port_trouble() {
  grep -qis 'address already in use' "$1"/log/*.log
}

# wait_ready HTTP TCP PID NODE_DIR: 0 when our server answers, 2 when it could not take its
# ports, 1 for any other failure (messages on stderr).
wait_ready() {
  local http=$1 tcp=$2 pid=$3 node=$4
  for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      if port_trouble "$node" || python3 "$PORTS_PY" held "$http" || python3 "$PORTS_PY" held "$tcp"; then
        echo "clickhouse-server (pid $pid) could not take its ports $http/$tcp; see $node/log/" >&2
        return 2
      fi
      echo "clickhouse-server (pid $pid) exited; see $node/log/" >&2
      tail -n 20 "$node/log/stdout.log" "$node/log/error.log" >&2 2>/dev/null || true
      return 1
    fi
    # "Ok." from a foreign server on our port does not count: the listeners must be ours.
    if [ "$(ping "$http")" = "Ok." ] && python3 "$PORTS_PY" owner "$http" "$pid" \
      && python3 "$PORTS_PY" owner "$tcp" "$pid"; then
      return 0
    fi
    sleep 0.1
  done
  echo "clickhouse-server (pid $pid) on port $http not ready after 30 s; see $node/log/" >&2
  return 1
}

# launch DIR I: starts node I on the ports in DIR/nodeI/ports; prints its line when ready.
# Returns as wait_ready.
launch() {
  local dir=$1 i=$2
  local bin; bin=$(server_bin)
  local node="$dir/node$i"
  read -r http tcp _inter <"$node/ports"
  # The last run's logs move aside: port_trouble reads this run's only.
  local f
  for f in "$node"/log/*.log; do [ -f "$f" ] && mv -f "$f" "$f.prev"; done
  if [ "$(basename "$bin")" = clickhouse ]; then
    setsid "$bin" server --config-file="$node/config.xml" >"$node/log/stdout.log" 2>&1 </dev/null &
  else
    setsid "$bin" --config-file="$node/config.xml" >"$node/log/stdout.log" 2>&1 </dev/null &
  fi
  local pid=$!
  echo "$pid" >"$node/pid"
  local rc=0
  wait_ready "$http" "$tcp" "$pid" "$node" || rc=$?
  [ "$rc" = 0 ] && echo "node $i http://127.0.0.1:$http $tcp $pid"
  return "$rc"
}

# try_start DIR N LAYOUT ZK: one try at starting the N nodes on newly reserved ports; returns
# 0 (all ready), 2 (some node could not take its ports) or 1 (another failure); after a
# failure every node of the try is stopped again.
try_start() {
  local dir=$1 n=$2 layout=$3 zk=$4
  local shards="" replicas="" i
  declare -a https tcps inters
  local ports; mapfile -t ports < <(python3 "$PORTS_PY" reserve $((3 * n)))
  for i in $(seq 1 "$n"); do
    https[$i]=${ports[$((3 * i - 3))]}; tcps[$i]=${ports[$((3 * i - 2))]}; inters[$i]=${ports[$((3 * i - 1))]}
    shards="$shards<shard><replica><host>127.0.0.1</host><port>${tcps[$i]}</port></replica></shard>"
    replicas="$replicas<replica><host>127.0.0.1</host><port>${tcps[$i]}</port></replica>"
  done
  local cluster="<spanline_2s>$shards</spanline_2s>"
  if [ "$layout" = replicas ]; then
    cluster="<spanline_1s2r><shard><internal_replication>true</internal_replication>$replicas</shard></spanline_1s2r>"
  fi
  for i in $(seq 1 "$n"); do
    local shard=$i
    [ "$layout" = replicas ] && shard=1
    write_config "$dir" "$i" "${https[$i]}" "${tcps[$i]}" "${inters[$i]}" "$cluster" "$shard" "$zk"
    echo "${https[$i]} ${tcps[$i]} ${inters[$i]}" >"$dir/node$i/ports"
  done
  # The nodes start in parallel; their lines print in order.
  local pids=() rc=0 r
  for i in $(seq 1 "$n"); do
    launch "$dir" "$i" >"$dir/node$i/launch.out" &
    pids[$i]=$!
  done
  for i in $(seq 1 "$n"); do
    r=0; wait "${pids[$i]}" || r=$?
    if [ "$r" = 1 ] || { [ "$r" = 2 ] && [ "$rc" = 0 ]; }; then rc=$r; fi
  done
  if [ "$rc" = 0 ]; then
    for i in $(seq 1 "$n"); do cat "$dir/node$i/launch.out"; done
  else
    # No node of a failed try is left running.
    CLICKHOUSE_STOP_GRACE_S=5 stop "$dir"
  fi
  return "$rc"
}

start() {
  local dir=$1 n=${2:-1} layout=${3:-shards} zk=${4:-}
  if [ -z "$(server_bin)" ]; then echo "clickhouse-server: missing"; exit 3; fi
  case "$layout" in
    shards) ;;
    replicas) [ -n "$zk" ] || { echo "replicas needs ZK_HOST:PORT" >&2; exit 2; } ;;
    *) echo "layout $layout: use shards or replicas" >&2; exit 2 ;;
  esac
  mkdir -p "$dir"
  local attempt rc
  for attempt in $(seq 1 "$ATTEMPTS"); do
    rc=0; try_start "$dir" "$n" "$layout" "$zk" || rc=$?
    [ "$rc" = 2 ] || return "$rc"
    echo "clickhouse: try $attempt of $ATTEMPTS lost a port to another process" >&2
  done
  echo "clickhouse: $n node(s) in $dir could not take their ports in $ATTEMPTS tries; see $dir/node*/log/" >&2
  return 1
}

# restart DIR I: node I again on its recorded ports (the cluster's configs name them).
restart() {
  local dir=$1 i=$2 attempt rc
  for attempt in $(seq 1 "$ATTEMPTS"); do
    rc=0; launch "$dir" "$i" || rc=$?
    [ "$rc" = 2 ] || return "$rc"
    echo "clickhouse: node $i's ports are held by another process (try $attempt of $ATTEMPTS)" >&2
    sleep 1
  done
  echo "clickhouse: node $i of $dir could not take its ports in $ATTEMPTS tries; see $dir/node$i/log/" >&2
  return 1
}

stop() {
  local dir=$1 only=${2:-*} f pid
  for f in "$dir"/node$only/pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((${CLICKHOUSE_STOP_GRACE_S:-10} * 10))); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?DIR}" "${3:-1}" "${4:-shards}" "${5:-}" ;;
  stop) stop "${2:?DIR}" "${3:-}" ;;
  restart)
    if [ -z "$(server_bin)" ]; then echo "clickhouse-server: missing"; exit 3; fi
    restart "${2:?DIR}" "${3:?node number}" ;;
  *) sed -n '2,31p' "$0"; exit 2 ;;
esac
