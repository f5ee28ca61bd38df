#!/usr/bin/env bash
# ZooKeeper for the replicated ClickHouse tests (docs/clickhouse.md, "Replication").
#
#   scripts/zookeeper.sh install            install Debian's zookeeper (root, apt as configured)
#   scripts/zookeeper.sh start DIR [PORT]   start one standalone server on 127.0.0.1:PORT (a free
#                                           port when omitted), config, data and log under DIR;
#                                           waits for `ruok` -> `imok`, prints
#                                           `zookeeper 127.0.0.1:PORT PID`
#   scripts/zookeeper.sh stop DIR           stop the server started in DIR, by its recorded pid
#
# Ports: without PORT, the port is reserved by scripts/ports.py (left in TIME_WAIT, so no
# other program is handed it before the server binds it) and written to DIR/port. The server
# is ready when `ruok` answers `imok` and its own process (the recorded pid) holds the
# listener, so another server on the port is never taken for it. When it cannot take a
# reserved port ("Address already in use" in its log, or another process holds it), it is
# started again on a new port, up to ZOOKEEPER_START_ATTEMPTS tries (default 4); with PORT
# given, once. Then it fails naming the log directory (exit 1).
#
# Prints "zookeeper: missing" and exits 3 when the server is absent (start).
# Java heap: ZOOKEEPER_HEAP_MB (default 256).
set -euo pipefail

PORTS_PY="$(dirname "${BASH_SOURCE[0]}")/ports.py"

JAR=/usr/share/java/zookeeper.jar

present() {
  [ -f "$JAR" ] && command -v java >/dev/null 2>&1
}

install() {
  if present; then
    echo "zookeeper present: $JAR"
    return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "zookeeper missing and not installable here (needs root and apt-get)" >&2
    return 1
  fi
  if ! apt-cache policy zookeeper 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends zookeeper
}

ruok() {
  python3 - "$1" <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
    s.sendall(b"ruok")
    ok = s.recv(16) == b"imok"
except OSError:
    ok = False
sys.exit(0 if ok else 1)
PY
}

# try_start DIR PORT: 0 when our server is ready on PORT, 2 when it could not take the port
# (it is stopped again), 1 for any other failure (messages on stderr).
try_start() {
  local dir=$1 port=$2
  mkdir -p "$dir/conf" "$dir/data" "$dir/log"
  cat >"$dir/conf/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
maxClientCnxns=100
admin.enableServer=false
4lw.commands.whitelist=ruok
CFG
  cat >"$dir/conf/log4j.properties" <<'LOG'
log4j.rootLogger=WARN, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=${zookeeper.log.dir}/zookeeper.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %m%n
LOG
  echo "$port" >"$dir/port"
  local f
  for f in "$dir"/log/*.log; do [ -f "$f" ] && mv -f "$f" "$f.prev"; done
  # Debian's zookeeper.jar has no logging backend of its own: log4j (configured above) when
  # its jars are there, else nothing is logged.
  local cp="$dir/conf:$JAR" jar
  for jar in /usr/share/java/slf4j-log4j12.jar /usr/share/java/log4j-1.2.jar; do
    [ -f "$jar" ] && cp="$cp:$jar"
  done
  setsid java "-Xmx${ZOOKEEPER_HEAP_MB:-256}m" -Dzookeeper.log.dir="$dir/log" \
    -cp "$cp" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/conf/zoo.cfg" \
    >"$dir/log/stdout.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/pid"
  for _ in $(seq 1 300); do
    # `imok` from a foreign server does not count: the listener must be ours.
    if ruok "$port" && python3 "$PORTS_PY" owner "$port" "$pid"; then
      echo "zookeeper 127.0.0.1:$port $pid"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      if grep -qis 'address already in use' "$dir"/log/*.log || python3 "$PORTS_PY" held "$port"; then
        echo "zookeeper (pid $pid) could not take port $port; see $dir/log/" >&2
        stop "$dir"
        return 2
      fi
      echo "zookeeper (pid $pid) exited; see $dir/log/" >&2
      tail -n 20 "$dir/log/stdout.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  echo "zookeeper (pid $pid) on port $port not ready after 30 s; see $dir/log/" >&2
  return 1
}

start() {
  local dir=$1 port=${2:-} attempts=${ZOOKEEPER_START_ATTEMPTS:-4} attempt rc
  if ! present; then echo "zookeeper: missing"; exit 3; fi
  [ -z "$port" ] || attempts=1
  for attempt in $(seq 1 "$attempts"); do
    rc=0; try_start "$dir" "${port:-$(python3 "$PORTS_PY" reserve 1)}" || rc=$?
    [ "$rc" = 2 ] || return "$rc"
    echo "zookeeper: try $attempt of $attempts lost its port to another process" >&2
  done
  echo "zookeeper in $dir could not take a port in $attempts tries; see $dir/log/" >&2
  return 1
}

stop() {
  local dir=$1 pid
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/pid"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?DIR}" "${3:-}" ;;
  stop) stop "${2:?DIR}" ;;
  *) sed -n '2,21p' "$0"; exit 2 ;;
esac
