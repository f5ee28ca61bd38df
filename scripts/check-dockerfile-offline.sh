#!/usr/bin/env bash
# Checks the registry path (the Dockerfile's own multi-stage build) on a machine without a
# container registry. Not part of CI: it takes 10-15 minutes and ~1.5 GB of disk.
#
# 1. Makes a stand-in for `rust:1.95-bookworm`: Debian bookworm from Debian's packages
#    (debootstrap: gcc, libc6-dev, ca-certificates) plus this machine's Rust toolchain, and
#    the host's CA bundle; `docker import`ed under that tag. Skipped if the tag exists.
# 2. `docker build` of ./Dockerfile exactly as Compose would (context ., the full multi-stage
#    build; `--network host` only so that cargo reaches crates.io from here), timed, tagged
#    spanline:latest.
# 3. Rebuilds after a one-line edit to a service, timed (the dependency layer is reused).
# 4. Runs the compose end-to-end test on that image (SKIP_BUILD=1 scripts/compose-e2e.sh).
#
#   KEEP_STANDIN=1   keep the stand-in image afterwards (default: removed)
#   DEBIAN_MIRROR=URL  the Debian mirror for debootstrap (default: the first Debian mirror of
#                      this machine's own apt configuration)
set -euo pipefail
cd "$(dirname "$0")/.."

base=$(sed -n 's/^ARG RUST_IMAGE=//p' Dockerfile)
work=$(mktemp -d /var/tmp/spanline-rootfs.XXXXXX)
edited=""
cleanup() {
  [ -z "$edited" ] || cp "$work/edited.orig" "$edited"
  rm -rf "$work"
  [ "${KEEP_STANDIN:-}" = 1 ] || docker rmi "$base" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The first non-security `deb` source of this machine's apt configuration: one-line entries
# in /etc/apt/sources.list and sources.list.d/*.list, then deb822 entries in *.sources.
apt_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" \
      | awk '$1 == "deb" && $3 !~ /security/ { print $2; exit }' | grep . && return 0
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
      { types = ""; uris = ""; suites = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^Types:/) types = $i
          else if ($i ~ /^URIs:/) uris = $i
          else if ($i ~ /^Suites:/) suites = $i
          else if ($i ~ /^Enabled:/) enabled = tolower($i)
        }
        if (types ~ /[: \t]deb([ \t]|$)/ && suites !~ /security/ && uris != "" && enabled !~ /no/) {
          sub(/^URIs:[ \t]*/, "", uris); split(uris, u, /[ \t]+/); print u[1]; exit
        } }' "$f" | grep . && return 0
  done
  return 1
}

if ! docker image inspect "$base" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  mirror=${DEBIAN_MIRROR:-$(apt_mirror)} || {
    echo "check-dockerfile: no Debian mirror in this machine's apt configuration; set DEBIAN_MIRROR" >&2
    exit 1
  }
  echo "check-dockerfile: debootstrap bookworm from $mirror (stand-in for $base)"
  debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates,binutils \
    bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  toolchain=$(rustc --print sysroot)
  mkdir -p "$work/root/usr/local/rust" "$work/root/usr/local/cargo"
  tar -C "$toolchain" -c --exclude=share/doc bin etc lib libexec | tar -x -C "$work/root/usr/local/rust"
  cp /etc/ssl/certs/ca-certificates.crt "$work/root/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$work/root/var/cache/apt/archives/"*.deb
  tar -C "$work/root" -c . | docker import \
    -c 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV CARGO_HOME=/usr/local/cargo' - "$base" >/dev/null
  rm -rf "$work/root"
fi

build() {
  local start=$SECONDS
  if ! DOCKER_BUILDKIT=0 docker build --network host -t spanline:latest . >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log" >&2
    echo "check-dockerfile: docker build failed" >&2
    exit 1
  fi
  echo $((SECONDS - start))
}

echo "check-dockerfile: docker build (the Dockerfile, all stages)"
full=$(build)
echo "check-dockerfile: built in $full s"
file=services/payment/src/lib.rs
cp -p "$file" "$work/edited.orig"
edited=$file
echo "// check-dockerfile: a one-line edit" >>"$file"
again=$(build)
cp -p "$work/edited.orig" "$file"
edited=""
echo "check-dockerfile: rebuilt after a one-line edit to $file in $again s"
docker image inspect spanline:latest --format 'check-dockerfile: spanline:latest {{.Size}} bytes, user {{.Config.User}}'
SKIP_BUILD=1 scripts/compose-e2e.sh
echo "check-dockerfile: full build $full s, rebuild after a service edit $again s"
