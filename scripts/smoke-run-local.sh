#!/usr/bin/env bash
# Proves the README quick start: runs scripts/run-local.sh on the default ports, sends the
# README's curl, reads the text tree, and checks that Ctrl-C (SIGINT) stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

for port in 8080 8081 8082 8083 4318 16686; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; the quick start needs the default ports free" >&2
    exit 1
  fi
done

work=$(mktemp -d)
: >"$work/run-local.out"
export COLLECTOR_DATA_DIR=$work/data
setsid scripts/run-local.sh >"$work/run-local.out" 2>&1 &
runner=$!
cleanup() {
  kill -INT -- "-$runner" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

deadline=$((SECONDS + 600))
until grep -q "Spanline is running" "$work/run-local.out"; do
  if ! kill -0 "$runner" 2>/dev/null || [ $SECONDS -gt $deadline ]; then
    echo "run-local.sh did not start:" >&2; cat "$work/run-local.out" >&2; exit 1
  fi
  sleep 0.2
done

# The README's curl, verbatim.
answer=$(curl -s -X POST localhost:8080/orders -H 'Content-Type: application/json' -d '{"user_id":"1","product":"Laptop","quantity":1}')
echo "answer: $answer"
trace_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["trace_id"])' "$answer")

tree=""
for _ in $(seq 1 100); do
  tree=$(curl -s "localhost:16686/v1/traces/$trace_id/tree?format=text&wait=5")
  if grep -q "payment fraud check" <<<"$tree" && grep -q "4 services" <<<"$tree"; then break; fi
  sleep 0.1
done
echo "$tree"
grep -q "frontend POST /orders" <<<"$tree" || { echo "tree incomplete" >&2; exit 1; }
grep -q "4 services" <<<"$tree" || { echo "tree incomplete" >&2; exit 1; }
grep -q "11 spans" <<<"$tree" || { echo "expected 11 spans (fraud check included)" >&2; exit 1; }

# Ctrl-C stops everything.
kill -INT -- "-$runner"
for _ in $(seq 1 200); do kill -0 "$runner" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$runner" 2>/dev/null; then echo "run-local.sh did not stop on Ctrl-C" >&2; exit 1; fi
grep -q "Stopped." "$work/run-local.out" || { cat "$work/run-local.out"; exit 1; }
for port in 8080 16686; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port still open after stop" >&2; exit 1; fi
done
echo "smoke: 1 passed, 0 failed"
