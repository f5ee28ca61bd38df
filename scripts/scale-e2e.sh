#!/usr/bin/env bash
# The scale topology of docs/scale.md, end to end: two collectors routing traces to each other
# (COLLECTOR_PEERS) behind haproxy (config/haproxy/scale.cfg: one ingest and one query port),
# the demo services sending to the proxy, orders placed at the frontend; every order's tree
# must be whole and complete through the proxy (?wait=, proxied to the trace's owner), and
# with a shared store (ClickHouse) found by id from either collector.
#
#   scripts/scale-e2e.sh processes   # default: processes on free loopback ports (no Docker)
#   scripts/scale-e2e.sh compose     # docker-compose --env-file config/scale.env --profile scale
#
# processes: storage is ClickHouse (a 2-shard cluster from scripts/clickhouse.sh) when the
# collector has that backend, else one SQLite file per collector (routing and ?wait= are the
# same; trace-by-id then answers only at the owner). Needs haproxy (installed with apt-get
# when missing). compose: builds the images offline first (SKIP_BUILD=1 reuses them); uses
# the published ports 8080, 16686, 4318, 4317, 5778, 4328, 4327, 16696; SPANLINE_SCALE_STORAGE=sqlite runs it
# without ClickHouse. Run by hand, not by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-processes}
orders=${ORDERS:-10}
work=$(mktemp -d /tmp/spanline-scale.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$mode" = compose ]; then
    COMPOSE_PROJECT_NAME=spanline-scale docker-compose --env-file config/scale.env --profile scale down -v >/dev/null 2>&1 || true
  fi
  if [ -f "$work/clickhouse/node1/ports" ]; then scripts/clickhouse.sh stop "$work/clickhouse" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# A reserved free port (scripts/ports.py: left in TIME_WAIT, so no other program is handed it
# before our process binds it).
free_port() { python3 scripts/ports.py reserve 1; }
wait_http() { # url [seconds]
  for _ in $(seq 1 $((${2:-30} * 10))); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "scale-e2e: $1 did not answer" >&2
  return 1
}

# check FRONTEND QUERY_URL [COLLECTOR_QUERY_URL...]: places orders, checks their trees.
check() {
  local frontend=$1 query=$2
  shift 2
  python3 - "$frontend" "$query" "$orders" "$@" <<'PY'
import json, sys, urllib.request
frontend, query, n, collectors = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
def get(url, data=None):
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=40) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
failures = []
found_everywhere = 0
for i in range(n):
    status, order = get(f"{frontend}/orders", json.dumps({"user_id": "1", "product": "Laptop", "quantity": 1}).encode())
    if status != 201:
        failures.append(f"order {i}: status {status}")
        continue
    t = order["trace_id"]
    status, tree = get(f"{query}/v1/traces/{t}/tree?wait=20")
    if status != 200 or not tree.get("complete") or len(tree.get("roots", [])) != 1:
        failures.append(f"{t}: status {status}, complete {tree and tree.get('complete')}")
        continue
    counts = [get(f"{c}/v1/traces/{t}")[0] for c in collectors]
    found_everywhere += all(c == 200 for c in counts)
    per = f"; by id per collector {counts}" if collectors else ""
    print(f"order {i}: trace {t} {tree['span_count']} spans {tree['service_count']} services, complete via the proxy{per}")
by_id = f"; {found_everywhere}/{n} found by id at every collector" if collectors else ""
print(f"scale-e2e: {n - len(failures)}/{n} orders whole through the proxy{by_id}")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
PY
}

metrics() { # query_url...
  local q
  for q in "$@"; do
    curl -fsS "$q/metrics" | grep -E '^spanline_peer_(spans_forwarded|spans_from_peers|forward_failures|waits_proxied)_total' | sed "s|^|$q |"
  done
}

if [ "$mode" = compose ]; then
  export COMPOSE_PROJECT_NAME=spanline-scale
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    scripts/build-images-offline.sh
    scripts/scale-images-offline.sh
  fi
  docker-compose --env-file config/scale.env --profile scale up -d
  wait_http http://127.0.0.1:8080/healthz 120
  wait_http http://127.0.0.1:16696/healthz 120
  check http://127.0.0.1:8080 http://127.0.0.1:16696
  docker-compose --env-file config/scale.env --profile scale ps
  exit 0
fi

bin=${SPANLINE_BIN_DIR:-target/${SPANLINE_PROFILE:-debug}}
if [ ! -x "$bin/collector" ]; then
  cargo build ${SPANLINE_PROFILE:+--$SPANLINE_PROFILE} -p collector -p frontend -p user-service -p order-service -p payment-service
fi
command -v haproxy >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null

storage=(COLLECTOR_STORAGE=sqlite)
if "$bin/collector" --help | grep -q clickhouse && [ -x scripts/clickhouse.sh ]; then
  scripts/clickhouse.sh install >/dev/null
  nodes=$(scripts/clickhouse.sh start "$work/clickhouse" 2)
  echo "$nodes"
  # Every node, comma-separated: the collector creates the tables on each (docs/clickhouse.md).
  ch_url=$(echo "$nodes" | awk '/^node /{print $3}' | paste -sd, -)
  storage=(COLLECTOR_STORAGE=clickhouse COLLECTOR_CLICKHOUSE_URL="$ch_url" COLLECTOR_CLICKHOUSE_CLUSTER=spanline_2s)
fi
echo "scale-e2e: processes on loopback, storage: ${storage[*]}"

declare -A p
for name in i1 q1 g1 i2 q2 g2 pi pq pg fe us os ps; do p[$name]=$(free_port); done
peers="http://127.0.0.1:${p[i1]},http://127.0.0.1:${p[i2]}"
queries="http://127.0.0.1:${p[q1]},http://127.0.0.1:${p[q2]}"
for n in 1 2; do
  mkdir -p "$work/c$n"
  env "${storage[@]}" COLLECTOR_DATA_DIR="$work/c$n" \
    COLLECTOR_INGEST_ADDR=127.0.0.1:${p[i$n]} COLLECTOR_QUERY_ADDR=127.0.0.1:${p[q$n]} \
    COLLECTOR_GRPC_ADDR=127.0.0.1:${p[g$n]} COLLECTOR_SAMPLING_ADDR=127.0.0.1:0 \
    COLLECTOR_PEERS="$peers" COLLECTOR_PEER_SELF="http://127.0.0.1:${p[i$n]}" COLLECTOR_PEER_QUERY_URLS="$queries" \
    "$bin/collector" >"$work/collector$n.log" 2>&1 &
  pids+=($!)
done
wait_http "http://127.0.0.1:${p[q1]}/healthz"
wait_http "http://127.0.0.1:${p[q2]}/healthz"
PROXY_INGEST_BIND=127.0.0.1:${p[pi]} PROXY_QUERY_BIND=127.0.0.1:${p[pq]} PROXY_GRPC_BIND=127.0.0.1:${p[pg]} \
  COLLECTOR_1_INGEST=127.0.0.1:${p[i1]} COLLECTOR_2_INGEST=127.0.0.1:${p[i2]} \
  COLLECTOR_1_QUERY=127.0.0.1:${p[q1]} COLLECTOR_2_QUERY=127.0.0.1:${p[q2]} \
  COLLECTOR_1_GRPC=127.0.0.1:${p[g1]} COLLECTOR_2_GRPC=127.0.0.1:${p[g2]} \
  haproxy -W -db -f config/haproxy/scale.cfg >"$work/haproxy.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:${p[pq]}/healthz"
otel=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:${p[pi]} OTEL_BSP_SCHEDULE_DELAY=100 NATS_URL=)
start_service() { # binary service port [VAR=value...]
  local b=$1 s=$2 port=$3
  shift 3
  env "${otel[@]}" OTEL_SERVICE_NAME="$s" LISTEN_ADDR=127.0.0.1:$port "$@" "$bin/$b" >"$work/$s.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/healthz"
}
start_service user-service user "${p[us]}"
start_service payment-service payment "${p[ps]}"
start_service order-service order "${p[os]}" PAYMENT_SERVICE_URL=http://127.0.0.1:${p[ps]}
start_service frontend frontend "${p[fe]}" USER_SERVICE_URL=http://127.0.0.1:${p[us]} \
  ORDER_SERVICE_URL=http://127.0.0.1:${p[os]} COLLECTOR_UI_URL=http://127.0.0.1:${p[pq]}
status=0
check "http://127.0.0.1:${p[fe]}" "http://127.0.0.1:${p[pq]}" "http://127.0.0.1:${p[q1]}" "http://127.0.0.1:${p[q2]}" || status=$?
metrics "http://127.0.0.1:${p[q1]}" "http://127.0.0.1:${p[q2]}"
[ "$status" = 0 ] || { echo "logs in $work"; trap - EXIT; cleanup; exit 1; }
rm -rf "$work"
