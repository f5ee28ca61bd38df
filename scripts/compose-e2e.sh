#!/usr/bin/env bash
# The compose end-to-end test (CI runs it from scripts/test.sh): builds the image offline
# (scripts/build-images-offline.sh: nothing is pulled), then scripts/compose_e2e.py starts
# the stack with `docker-compose up -d` and asserts across containers (trees, a 30 s
# collector outage, a collector restart, SIGKILL during a burst, payment down, `down -v`),
# and measures the time from `up` to the first complete trace and the stack's memory.
#
# Runs the stack as compose project $COMPOSE_PROJECT_NAME (default spanline-e2e) on the
# published ports 8080, 16686, 4318 and 4317, which must be free. Always ends with
# `docker-compose down -v`. Without Docker it skips, except under CI=true, where it fails.
#
#   SKIP_BUILD=1 scripts/compose-e2e.sh     # reuse an existing spanline:latest
set -euo pipefail
cd "$(dirname "$0")/.."
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-spanline-e2e}

# docker-compose (v1, what this machine has), else the `docker compose` plugin (v2).
missing=""
if ! command -v docker >/dev/null; then
  missing="docker"
elif ! docker info >/dev/null 2>&1; then
  missing="a running Docker daemon"
elif command -v docker-compose >/dev/null; then
  export COMPOSE=${COMPOSE:-docker-compose}
elif docker compose version >/dev/null 2>&1; then
  export COMPOSE=${COMPOSE:-docker compose}
else
  missing="docker-compose (or the docker compose plugin)"
fi
if [ -n "$missing" ]; then
  if [ "${CI:-}" = true ]; then
    echo "compose-e2e: needs $missing, which CI must have" >&2
    echo "compose-e2e: 0 passed, 1 failed"
    exit 1
  fi
  echo "compose-e2e: SKIPPED: needs $missing (under CI=true this fails instead)"
  exit 0
fi

# One run at a time per machine: runs share the Docker engine, the published ports and the
# project name, and each begins by removing the project's leftovers, which would tear down
# another run's stack. Wait (bounded) for a run from another checkout to finish.
lock=${TMPDIR:-/tmp}/spanline-compose-e2e.lock
exec 9>"$lock"
if ! flock -n 9; then
  echo "compose-e2e: another compose-e2e run holds $lock; waiting up to 20 min for it"
  if ! flock -w 1200 9; then
    echo "compose-e2e: still locked after 20 min ($lock)" >&2
    echo "compose-e2e: 0 passed, 1 failed"
    exit 1
  fi
fi

cleanup() { $COMPOSE down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$SECONDS
if [ "${SKIP_BUILD:-}" != 1 ]; then
  scripts/build-images-offline.sh
fi
echo "compose-e2e: image ready after $((SECONDS - start)) s; compose: $COMPOSE ($($COMPOSE version --short 2>/dev/null || true))"
python3 scripts/compose_e2e.py
