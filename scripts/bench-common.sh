# Shell helpers shared by the benchmark scripts (sourced, not run). The caller sets
# $log_dir, where each process logs to <name>.log, and runs `trap stop_all EXIT`.

# Waits until `command...` succeeds (30 s at most), or stops the script with the log of the
# process `name` ($log_dir/<name>.log) if `pid` exits first.
wait_for() { # name pid command...
  local name=$1 pid=$2
  shift 2
  for _ in $(seq 1 300); do
    if "$@"; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited; its log:" >&2
      tail -n 20 "$log_dir/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$name: not ready after 30 s ($*)" >&2
  exit 1
}

# Whether `url` answers 2xx; whether something listens on 127.0.0.1:`port`.
http_ok() { curl -fsS -o /dev/null "$1" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until `url` answers 2xx (wait_for).
wait_healthy() { wait_for "$1" "$3" http_ok "$2"; } # name url pid

# Waits until something listens on 127.0.0.1:`port` (wait_for).
wait_port() { wait_for "$2" "$3" port_open "$1"; } # port name pid

# CPU time (utime + stime, clock ticks) of the given pids.
cpu_ticks() {
  local total=0 pid fields
  for pid in "$@"; do
    read -r -a fields <"/proc/$pid/stat"
    # Fields 14 and 15 (1-based), after the parenthesised command name (no spaces here).
    total=$((total + fields[13] + fields[14]))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)

# Stops the script when one of the ports is taken.
require_free_ports() { # port...
  local p
  for p in "$@"; do
    if port_open "$p"; then
      echo "port $p is in use; set BASE_PORT to a free range" >&2
      exit 1
    fi
  done
}

# The processes a benchmark started: services in $pids, the collector in $collector_pid;
# stop_all stops and forgets them (the script may start others after it).
pids=()
collector_pid=
stop_all() {
  local pid
  for pid in "${pids[@]}" $collector_pid; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}" $collector_pid; do wait "$pid" 2>/dev/null || true; done
  pids=()
  collector_pid=
}

# Starts the demo's user, payment, order and frontend services from $bin on the ports
# $p_user, $p_pay, $p_order, $p_front (wired to each other, the UI link to $p_query), each
# with the extra environment given, logging to $log_dir/<prefix>-<service>.log; adds their
# pids to $pids and returns once each answers /healthz.
start_demo_services() { # log-prefix VAR=value...
  local prefix=$1 s port name
  shift
  for s in user payment order frontend; do
    name=$s-service
    case $s in
      user) port=$p_user ;; order) port=$p_order ;; payment) port=$p_pay ;;
      frontend) port=$p_front name=frontend ;;
    esac
    env "$@" OTEL_SERVICE_NAME="$s" LISTEN_ADDR="127.0.0.1:$port" \
      USER_SERVICE_URL="http://127.0.0.1:$p_user" ORDER_SERVICE_URL="http://127.0.0.1:$p_order" \
      PAYMENT_SERVICE_URL="http://127.0.0.1:$p_pay" COLLECTOR_UI_URL="http://127.0.0.1:$p_query" \
      "$bin/$name" >>"$log_dir/$prefix-$s.log" 2>&1 &
    pids+=($!)
    wait_healthy "$prefix-$s" "http://127.0.0.1:$port/healthz" "$!"
  done
}

# Stops the services in $pids and waits for them.
stop_demo_services() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
