#!/usr/bin/env bash
# Proves the README quick start and run-local.sh's port handling:
#
# 1. A port taken by another program that answers every health probe with 200 (as a second
#    stack would): run-local.sh must stop with the started process's own error
#    ("Address already in use") and never say "Spanline is running".
# 2. The quick start on the default ports, except the query port moved with
#    COLLECTOR_QUERY_PORT: the banner names the web UI there, the README's curl gets a
#    trace_url on that port, the text tree is complete, and Ctrl-C (SIGINT) stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

for port in 8080 8081 8082 8083 4317 4318 5778; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; the quick start needs the default ports free" >&2
    exit 1
  fi
done

# A reserved free port (scripts/ports.py: in TIME_WAIT, so no other program is handed it).
free_port() { python3 scripts/ports.py reserve 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

work=$(mktemp -d)
occupant=""
runner=""
cleanup() {
  [ -z "$runner" ] || kill -INT -- "-$runner" 2>/dev/null || true
  [ -z "$occupant" ] || kill "$occupant" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- 1. a taken port -------------------------------------------------------------------
taken=$(free_port)
python3 - "$taken" <<'PY' &
import http.server, sys
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok from another program\n")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), Ok).serve_forever()
PY
occupant=$!
for _ in $(seq 1 100); do port_open "$taken" && break; sleep 0.1; done
port_open "$taken" || { echo "the occupying listener did not start" >&2; exit 1; }

status=0
COLLECTOR_DATA_DIR=$work/taken COLLECTOR_QUERY_PORT=$(free_port) USER_PORT=$taken \
  timeout 600 scripts/run-local.sh >"$work/taken.out" 2>&1 </dev/null || status=$?
cat "$work/taken.out"
fail() { echo "smoke (taken port): $*" >&2; exit 1; }
[ "$status" != 0 ] || fail "run-local.sh exited 0 with port $taken taken"
[ "$status" != 124 ] || fail "run-local.sh hung with port $taken taken"
grep -q "Spanline is running" "$work/taken.out" && fail "claimed to be running"
grep -q "user-service .*ready" "$work/taken.out" && fail "took the other program for user-service"
grep -q "user-service exited" "$work/taken.out" || fail "did not say user-service exited"
grep -q "Address already in use" "$work/taken.out" || fail "did not show the process's own error"
kill "$occupant" 2>/dev/null || true
occupant=""
for port in 8080 4318; do port_open "$port" && fail "port $port still open after the failed start"; done
echo "smoke: a taken port stops run-local.sh with the process's own error"

# --- 2. the quick start, query port moved ------------------------------------------------
query_port=$(free_port)
export COLLECTOR_QUERY_PORT=$query_port
export COLLECTOR_DATA_DIR=$work/data
: >"$work/run-local.out"
setsid scripts/run-local.sh >"$work/run-local.out" 2>&1 &
runner=$!

deadline=$((SECONDS + 600))
until grep -q "Spanline is running" "$work/run-local.out"; do
  if ! kill -0 "$runner" 2>/dev/null || [ $SECONDS -gt $deadline ]; then
    echo "run-local.sh did not start:" >&2; cat "$work/run-local.out" >&2; exit 1
  fi
  sleep 0.2
done
grep -q "Web UI: http://localhost:$query_port/" "$work/run-local.out" \
  || { cat "$work/run-local.out"; echo "the banner does not name the web UI" >&2; exit 1; }

# The README's curl, verbatim.
answer=$(curl -s -X POST localhost:8080/orders -H 'Content-Type: application/json' -d '{"user_id":"1","product":"Laptop","quantity":1}')
echo "answer: $answer"
trace_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["trace_id"])' "$answer")
grep -q "\"trace_url\":\"http://localhost:$query_port/trace/$trace_id\"" <<<"$answer" \
  || { echo "trace_url does not point at COLLECTOR_QUERY_PORT" >&2; exit 1; }

tree=""
for _ in $(seq 1 100); do
  tree=$(curl -s "localhost:$query_port/v1/traces/$trace_id/tree?format=text&wait=5")
  if grep -q "notification send email" <<<"$tree" && ! grep -q "(incomplete)" <<<"$tree"; then break; fi
  sleep 0.1
done
echo "$tree"
grep -q "frontend POST /orders" <<<"$tree" || { echo "tree incomplete" >&2; exit 1; }
grep -q "5 services" <<<"$tree" || { echo "tree incomplete" >&2; exit 1; }
grep -q "payment fraud check" <<<"$tree" || { echo "no fraud check in the tree" >&2; exit 1; }
grep -q "notification process payments.completed \[consumer\]" <<<"$tree" \
  || { echo "the queue hop to notification is missing" >&2; exit 1; }
grep -q "(incomplete)" <<<"$tree" && { echo "the tree says it is incomplete" >&2; exit 1; }

# Ctrl-C stops everything.
kill -INT -- "-$runner"
for _ in $(seq 1 200); do kill -0 "$runner" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$runner" 2>/dev/null; then echo "run-local.sh did not stop on Ctrl-C" >&2; exit 1; fi
runner=""
grep -q "Stopped." "$work/run-local.out" || { cat "$work/run-local.out"; exit 1; }
for port in 8080 4318 "$query_port"; do
  if port_open "$port"; then echo "port $port still open after stop" >&2; exit 1; fi
done
echo "smoke: 2 passed, 0 failed"
