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
# Prints "clickhouse-server: missing" and exits 3 when the server is absent (start/restart).
set -euo pipefail

server_bin() {
  command -v clickhouse-server 2>/dev/null || command -v clickhouse 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
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

wait_ready() {
  local http=$1 pid=$2 log=$3
  for _ in $(seq 1 300); do
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
      "http://127.0.0.1:$http/ping" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "clickhouse-server (pid $pid) exited; see $log" >&2
      tail -n 20 "$log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  echo "clickhouse-server on port $http not ready after 30 s" >&2
  return 1
}

launch() {
  local dir=$1 i=$2
  local bin; bin=$(server_bin)
  local node="$dir/node$i"
  read -r http tcp _inter <"$node/ports"
  if [ "$(basename "$bin")" = clickhouse ]; then
    setsid "$bin" server --config-file="$node/config.xml" >"$node/log/stdout.log" 2>&1 </dev/null &
  else
    setsid "$bin" --config-file="$node/config.xml" >"$node/log/stdout.log" 2>&1 </dev/null &
  fi
  local pid=$!
  echo "$pid" >"$node/pid"
  wait_ready "$http" "$pid" "$node/log/stdout.log"
  echo "node $i http://127.0.0.1:$http $tcp $pid"
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
  local shards="" replicas="" i
  declare -a https tcps inters
  for i in $(seq 1 "$n"); do
    https[$i]=$(free_port); tcps[$i]=$(free_port); inters[$i]=$(free_port)
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
  local pids=() failed=0
  for i in $(seq 1 "$n"); do
    launch "$dir" "$i" >"$dir/node$i/launch.out" &
    pids[$i]=$!
  done
  for i in $(seq 1 "$n"); do wait "${pids[$i]}" || failed=1; done
  for i in $(seq 1 "$n"); do cat "$dir/node$i/launch.out"; done
  return "$failed"
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
    launch "${2:?DIR}" "${3:?node number}" ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
