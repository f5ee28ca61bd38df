#!/usr/bin/env bash
# Builds, without a container registry, a NATS image equivalent for docker-compose.yml to the
# official `nats:2-alpine` one: the host's nats-server (scripts/nats.sh finds or installs it)
# with the shared libraries it loads, and wget for the compose health check, on `scratch`.
# It is tagged as the image docker-compose.yml names, so `docker-compose up` pulls nothing.
# Called by scripts/build-images-offline.sh.
#
#   NATS_IMAGE=nats:2-alpine   the tag to build (docker-compose.yml's default)
set -euo pipefail
cd "$(dirname "$0")/.."

image=${NATS_IMAGE:-nats:2-alpine}
server=$(scripts/nats.sh --path)
wget_bin=$(command -v wget) || { echo "nats-image-offline: wget is needed for the health check" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/root/usr/local/bin" "$ctx/root/etc" "$ctx/root/tmp" "$ctx/root/data"
cp "$server" "$ctx/root/usr/local/bin/nats-server"
cp "$wget_bin" "$ctx/root/usr/local/bin/wget"
# Every shared library (and the loader) the two binaries need, at the same paths.
for lib in $( { ldd "$server"; ldd "$wget_bin"; } | grep -o '/[^ ]*' | sort -u); do
  mkdir -p "$ctx/root$(dirname "$lib")"
  cp -L "$lib" "$ctx/root$lib"
done
printf 'root:x:0:0:root:/:/sbin/nologin\n' >"$ctx/root/etc/passwd"
printf 'root:x:0:\n' >"$ctx/root/etc/group"
chmod 1777 "$ctx/root/tmp"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
ENV PATH=/usr/local/bin
EXPOSE 4222 8222
ENTRYPOINT ["nats-server"]
CMD ["-js", "-sd", "/data", "-m", "8222"]
DOCKERFILE

echo "nats-image-offline: docker build -t $image from $server ($("$server" --version))"
if ! DOCKER_BUILDKIT=0 docker build -t "$image" "$ctx" >"$ctx/build.log" 2>&1; then
  cat "$ctx/build.log" >&2
  echo "nats-image-offline: docker build failed" >&2
  exit 1
fi
