#!/usr/bin/env bash
# Builds and starts the collector, NATS with JetStream (scripts/nats.sh: installs
# nats-server when missing) and the five demo services, waits until each process it
# started is the one listening on its port and healthy, prints what to try, and stops
# everything on Ctrl-C. Logs go to $LOG_DIR (default ./data/logs); spans are stored in
# $COLLECTOR_DATA_DIR (default ./data).
#
# Ports (defaults of DESIGN §2; set any of them to run beside another stack):
#   FRONTEND_PORT=8080 USER_PORT=8081 ORDER_PORT=8082 PAYMENT_PORT=8083 NOTIFICATION_PORT=8084
#   NATS_PORT=4222 NATS_MONITOR_PORT=8222 (its JetStream store: $COLLECTOR_DATA_DIR/nats)
#   COLLECTOR_INGEST_PORT=4318 (OTLP/HTTP)  COLLECTOR_GRPC_PORT=4317 (OTLP/gRPC)
#   COLLECTOR_QUERY_PORT=16686 (query API and web UI)
#   COLLECTOR_SAMPLING_PORT=5778 (Jaeger remote sampling strategies)
#
# A process that cannot start (e.g. its port is taken: "Address already in use") stops the
# script with that process's own error; a health probe answered by some other program on the
# port is never taken for readiness.
#
#   SPANLINE_PROFILE=debug scripts/run-local.sh   # faster build, slower binaries
set -euo pipefail
cd "$(dirname "$0")/.."

FRONTEND_PORT=${FRONTEND_PORT:-8080}
USER_PORT=${USER_PORT:-8081}
ORDER_PORT=${ORDER_PORT:-8082}
PAYMENT_PORT=${PAYMENT_PORT:-8083}
NOTIFICATION_PORT=${NOTIFICATION_PORT:-8084}
NATS_PORT=${NATS_PORT:-4222}
NATS_MONITOR_PORT=${NATS_MONITOR_PORT:-8222}
COLLECTOR_INGEST_PORT=${COLLECTOR_INGEST_PORT:-4318}
COLLECTOR_GRPC_PORT=${COLLECTOR_GRPC_PORT:-4317}
COLLECTOR_QUERY_PORT=${COLLECTOR_QUERY_PORT:-16686}
COLLECTOR_SAMPLING_PORT=${COLLECTOR_SAMPLING_PORT:-5778}
for var in FRONTEND_PORT USER_PORT ORDER_PORT PAYMENT_PORT NOTIFICATION_PORT NATS_PORT \
           NATS_MONITOR_PORT COLLECTOR_INGEST_PORT COLLECTOR_GRPC_PORT COLLECTOR_QUERY_PORT \
           COLLECTOR_SAMPLING_PORT; do
  value=${!var}
  if ! [[ $value =~ ^[0-9]+$ ]] || [ "$value" -lt 1 ] || [ "$value" -gt 65535 ]; then
    echo "$var=$value is not a port number (1-65535)" >&2
    exit 64
  fi
done

profile=${SPANLINE_PROFILE:-release}
export COLLECTOR_DATA_DIR=${COLLECTOR_DATA_DIR:-$PWD/data}
log_dir=${LOG_DIR:-$COLLECTOR_DATA_DIR/logs}
mkdir -p "$log_dir"

if [ "$profile" = release ]; then
  echo "Building (release; the first build takes a few minutes)..."
  cargo build --release --bins --locked --quiet
  bin=${CARGO_TARGET_DIR:-target}/release
else
  echo "Building (debug)..."
  cargo build --bins --locked --quiet
  bin=${CARGO_TARGET_DIR:-target}/debug
fi

# The demo exports quickly so a tree is complete a moment after the curl returns.
export OTEL_EXPORTER_OTLP_ENDPOINT=${OTEL_EXPORTER_OTLP_ENDPOINT:-http://localhost:$COLLECTOR_INGEST_PORT}
export OTEL_BSP_SCHEDULE_DELAY=${OTEL_BSP_SCHEDULE_DELAY:-200}
ui_url=http://localhost:$COLLECTOR_QUERY_PORT
export NATS_URL=nats://localhost:$NATS_PORT

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "Stopping..."
  # Services first, so their last spans reach the collector; the collector last.
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for ((i=${#pids[@]}-1; i>=0; i--)); do wait "${pids[$i]}" 2>/dev/null || true; done
  echo "Stopped."
}
trap stop EXIT
trap 'exit 0' INT TERM

# Whether process $1 holds a listening TCP socket on port $2. On Linux: the socket's inode
# in /proc/net/tcp{,6} is among the process's open files. Elsewhere: the process's log (from
# byte $3 on) has its startup line naming the port (printed only after a successful bind).
owns_port() {
  local pid=$1 port=$2 log=$3 from=$4 inode
  if [ -r /proc/net/tcp ]; then
    for inode in $(awk -v p="$(printf ':%04X' "$port")" \
        '$4 == "0A" && substr($2, length($2) - 4) == p { print $10 }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null); do
      if [ -n "$(find "/proc/$pid/fd" -lname "socket:\[$inode\]" 2>/dev/null | head -n 1)" ]; then
        return 0
      fi
    done
    return 1
  fi
  tail -c "+$((from + 1))" "$log" | grep -Eq "(listening|ingest) on .*:$port\\b|:$port,"
}

start() { # name health-url "port..." command...
  local name=$1 probe=$2 ports=$3; shift 3
  local log=$log_dir/$name.log
  touch "$log"
  local from
  from=$(wc -c <"$log")
  "$@" >>"$log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      local status=0
      wait "$pid" || status=$?
      echo "$name exited (status $status) instead of starting; its output ($log):" >&2
      tail -c "+$((from + 1))" "$log" | tail -n 20 >&2
      exit 1
    fi
    local port mine=1
    for port in $ports; do
      owns_port "$pid" "$port" "$log" "$from" || { mine=0; break; }
    done
    if [ "$mine" = 1 ] && curl -fsS -o /dev/null "$probe" 2>/dev/null; then
      printf '  %-16s ready on :%s (pid %s)\n' "$name" "${ports// /, :}" "$pid"
      return 0
    fi
    sleep 0.1
  done
  echo "$name (pid $pid) did not become healthy on port(s) $ports in 30 s; see $log" >&2
  exit 1
}

echo "Starting (logs in $log_dir)..."
COLLECTOR_INGEST_ADDR=0.0.0.0:$COLLECTOR_INGEST_PORT \
COLLECTOR_GRPC_ADDR=0.0.0.0:$COLLECTOR_GRPC_PORT \
COLLECTOR_QUERY_ADDR=0.0.0.0:$COLLECTOR_QUERY_PORT \
COLLECTOR_SAMPLING_ADDR=0.0.0.0:$COLLECTOR_SAMPLING_PORT \
  start collector "http://localhost:$COLLECTOR_QUERY_PORT/health" \
  "$COLLECTOR_INGEST_PORT $COLLECTOR_GRPC_PORT $COLLECTOR_QUERY_PORT $COLLECTOR_SAMPLING_PORT" \
  "$bin/collector"
# The message queue of the asynchronous flow (installed here when missing).
scripts/nats.sh --path >/dev/null
NATS_MONITOR_PORT=$NATS_MONITOR_PORT NATS_STORE_DIR=${NATS_STORE_DIR:-$COLLECTOR_DATA_DIR/nats} \
  start nats-server "http://localhost:$NATS_MONITOR_PORT/healthz" "$NATS_PORT $NATS_MONITOR_PORT" \
  scripts/nats.sh "$NATS_PORT"
OTEL_SERVICE_NAME=notification LISTEN_ADDR=0.0.0.0:$NOTIFICATION_PORT \
  start notification-service "http://localhost:$NOTIFICATION_PORT/healthz" "$NOTIFICATION_PORT" \
  "$bin/notification-service"
OTEL_SERVICE_NAME=user LISTEN_ADDR=0.0.0.0:$USER_PORT \
  start user-service "http://localhost:$USER_PORT/healthz" "$USER_PORT" "$bin/user-service"
OTEL_SERVICE_NAME=payment LISTEN_ADDR=0.0.0.0:$PAYMENT_PORT \
  start payment-service "http://localhost:$PAYMENT_PORT/healthz" "$PAYMENT_PORT" \
  "$bin/payment-service"
OTEL_SERVICE_NAME=order LISTEN_ADDR=0.0.0.0:$ORDER_PORT \
PAYMENT_SERVICE_URL=http://localhost:$PAYMENT_PORT \
  start order-service "http://localhost:$ORDER_PORT/healthz" "$ORDER_PORT" "$bin/order-service"
OTEL_SERVICE_NAME=frontend LISTEN_ADDR=0.0.0.0:$FRONTEND_PORT \
USER_SERVICE_URL=http://localhost:$USER_PORT ORDER_SERVICE_URL=http://localhost:$ORDER_PORT \
COLLECTOR_UI_URL=$ui_url \
  start frontend "http://localhost:$FRONTEND_PORT/healthz" "$FRONTEND_PORT" "$bin/frontend"

cat <<MSG

Spanline is running. Web UI: $ui_url/

Place an order:

  curl -s -X POST localhost:$FRONTEND_PORT/orders -H 'Content-Type: application/json' \\
       -d '{"user_id":"1","product":"Laptop","quantity":1}'

Or asynchronously, through NATS (202 now; GET /orders/<order_id> shows pending, then confirmed):

  curl -s -X POST 'localhost:$FRONTEND_PORT/orders?mode=async' -H 'Content-Type: application/json' \\
       -d '{"user_id":"1","product":"Laptop","quantity":1}'

Then open the trace_url of the answer, or read the trace here (use its trace_id):

  curl -s 'localhost:$COLLECTOR_QUERY_PORT/v1/traces/<trace_id>/tree?format=text&wait=5'

OTLP ingest: http://localhost:$COLLECTOR_INGEST_PORT (HTTP), localhost:$COLLECTOR_GRPC_PORT (gRPC).
Try ?fail=payment, ?delay=payment:600 or user_id "999". Ctrl-C stops everything.
MSG

wait
