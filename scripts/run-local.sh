#!/usr/bin/env bash
# Builds and starts the collector and the four demo services on the default ports
# (DESIGN §2), waits until all are healthy, prints what to try, and stops everything on
# Ctrl-C. Logs go to $LOG_DIR (default ./data/logs); spans are stored in
# $COLLECTOR_DATA_DIR (default ./data).
#
#   SPANLINE_PROFILE=debug scripts/run-local.sh   # faster build, slower binaries
set -euo pipefail
cd "$(dirname "$0")/.."

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
export OTEL_EXPORTER_OTLP_ENDPOINT=${OTEL_EXPORTER_OTLP_ENDPOINT:-http://localhost:4318}
export OTEL_BSP_SCHEDULE_DELAY=${OTEL_BSP_SCHEDULE_DELAY:-200}

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

start() { # name url-to-probe command...
  local name=$1 probe=$2; shift 2
  "$@" >>"$log_dir/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$probe" 2>/dev/null; then
      printf '  %-16s ready (pid %s)\n' "$name" "$pid"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited; its log ($log_dir/$name.log):" >&2
      tail -n 20 "$log_dir/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$name did not become healthy in 30 s; see $log_dir/$name.log" >&2
  exit 1
}

echo "Starting (logs in $log_dir)..."
start collector       http://localhost:16686/health "$bin/collector"
OTEL_SERVICE_NAME=user    start user-service    http://localhost:8081/healthz "$bin/user-service"
OTEL_SERVICE_NAME=payment start payment-service http://localhost:8083/healthz "$bin/payment-service"
OTEL_SERVICE_NAME=order   start order-service   http://localhost:8082/healthz "$bin/order-service"
OTEL_SERVICE_NAME=frontend start frontend       http://localhost:8080/healthz "$bin/frontend"

cat <<'MSG'

Spanline is running. Place an order:

  curl -s -X POST localhost:8080/orders -H 'Content-Type: application/json' \
       -d '{"user_id":"1","product":"Laptop","quantity":1}'

Then read its trace (use the trace_id from the answer):

  curl -s 'localhost:16686/v1/traces/<trace_id>/tree?format=text&wait=5'

Try ?fail=payment, ?delay=payment:600 or user_id "999". Ctrl-C stops everything.
MSG

wait
