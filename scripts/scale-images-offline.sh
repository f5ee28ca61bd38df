#!/usr/bin/env bash
# Builds, without a container registry, the two extra images of docker-compose.yml's `scale`
# profile (docs/scale.md) from binaries of this machine's Debian packages, on `scratch`, the
# way scripts/nats-image-offline.sh builds the NATS image:
#   spanline-clickhouse:18.16   clickhouse-server + clickhouse-client (Debian 18.16) with the
#                               shared libraries they load and Debian's default configuration
#   spanline-haproxy:2.6        haproxy (Debian 2.6) with its libraries
# Installs the packages first when they are missing (root, apt-get). The Spanline image itself
# comes from scripts/build-images-offline.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { # binary package
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "scale-images-offline: installing $2"
  if ! apt-cache policy "$2" 2>/dev/null | grep -q 'Candidate: [0-9]'; then apt-get update -qq; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
need clickhouse-server clickhouse-server
need clickhouse-client clickhouse-client
need haproxy haproxy

# rootfs DIR BINARY...: the binaries at /usr/local/bin and every library they load.
rootfs() {
  local root=$1 bin lib
  shift
  mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp"
  for bin in "$@"; do
    cp -L "$(command -v "$bin")" "$root/usr/local/bin/$bin"
  done
  for lib in $(for bin in "$@"; do ldd "$(command -v "$bin")"; done | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  printf 'root:x:0:0:root:/:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
  chmod 1777 "$root/tmp"
}

build() { # tag context
  echo "scale-images-offline: docker build -t $1"
  if ! DOCKER_BUILDKIT=0 docker build -t "$1" "$2" >"$2/build.log" 2>&1; then
    cat "$2/build.log" >&2
    echo "scale-images-offline: docker build of $1 failed" >&2
    exit 1
  fi
}

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

# ClickHouse: Debian's config.xml and users.xml; docker-compose.yml mounts config.d/scale.xml
# (listen on all addresses, log to the console, the 2-shard cluster).
ch=$ctx/clickhouse
rootfs "$ch/root" clickhouse-server clickhouse-client
mkdir -p "$ch/root/etc/clickhouse-server/config.d" "$ch/root/var/lib/clickhouse" \
  "$ch/root/var/log/clickhouse-server"
cp /etc/clickhouse-server/config.xml /etc/clickhouse-server/users.xml "$ch/root/etc/clickhouse-server/"
# The time zone database (ClickHouse resolves its local zone at start): UTC.
mkdir -p "$ch/root/usr/share"
cp -r /usr/share/zoneinfo "$ch/root/usr/share/zoneinfo"
ln -sf /usr/share/zoneinfo/Etc/UTC "$ch/root/etc/localtime"
# The resolver libraries glibc loads at run time for "files dns" (service names in compose).
for lib in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_dns.so.2 \
           /lib/x86_64-linux-gnu/libresolv.so.2; do
  [ -e "$lib" ] && cp -L "$lib" "$ch/root$lib"
done
cat >"$ch/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
ENV PATH=/usr/local/bin
ENV TZ=UTC
EXPOSE 8123 9000
ENTRYPOINT ["clickhouse-server"]
CMD ["--config-file=/etc/clickhouse-server/config.xml"]
DOCKERFILE
build spanline-clickhouse:18.16 "$ch"

px=$ctx/haproxy
rootfs "$px/root" haproxy
mkdir -p "$px/root/etc/haproxy" "$px/root/run"
for lib in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_dns.so.2 \
           /lib/x86_64-linux-gnu/libresolv.so.2; do
  [ -e "$lib" ] && cp -L "$lib" "$px/root$lib"
done
cp config/haproxy/scale.cfg "$px/root/etc/haproxy/haproxy.cfg"
cat >"$px/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
ENV PATH=/usr/local/bin
EXPOSE 4317 4318 16686
ENTRYPOINT ["haproxy"]
CMD ["-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
DOCKERFILE
build spanline-haproxy:2.6 "$px"
docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^spanline-(clickhouse|haproxy):'
