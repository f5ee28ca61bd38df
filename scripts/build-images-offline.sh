#!/usr/bin/env bash
# Builds the Spanline image `spanline:latest` without a container registry: nothing is
# pulled. Also builds the NATS image docker-compose.yml names from the host's nats-server
# (scripts/nats-image-offline.sh). The binaries are compiled on this machine (release, glibc linked statically) and
# copied into the `runtime` stage of ./Dockerfile, which is `FROM scratch`. Afterwards a plain
#
#   docker-compose up -d
#
# starts the stack from docker-compose.yml (it finds the image and builds nothing).
#
#   SPANLINE_IMAGE=spanline:latest   the tag to build (docker-compose.yml uses spanline:latest)
#   CARGO_TARGET_DIR                 honoured as usual
set -euo pipefail
cd "$(dirname "$0")/.."

image=${SPANLINE_IMAGE:-spanline:latest}
target=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

# The static glibc archives (libc.a) come with libc6-dev; readelf and strip with binutils.
if ! [ -e /usr/lib/x86_64-linux-gnu/libc.a ] && ! ls /usr/lib/*/libc.a >/dev/null 2>&1 \
   || ! command -v readelf >/dev/null || ! command -v strip >/dev/null; then
  echo "build-images-offline: installing libc6-dev binutils"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libc6-dev binutils >/dev/null
fi

# The registry path (the Dockerfile's dependency layer) names every workspace member's
# manifest; CI builds offline, so check here that the list is still complete.
members=$(cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, os, sys
m = json.load(sys.stdin)
root = m["workspace_root"]
ids = set(m["workspace_members"])
for p in m["packages"]:
    if p["id"] in ids:
        print(os.path.relpath(os.path.dirname(p["manifest_path"]), root))
')
for dir in $members; do
  if ! grep -q "^COPY $dir/Cargo.toml $dir/\$" Dockerfile \
     || ! sed -n '/docker-stub-sources.sh crates/,/build-static.sh$/p' Dockerfile | grep -qw -- "$dir"; then
    echo "build-images-offline: the Dockerfile's dependency layer does not list the workspace member $dir" >&2
    echo "  add 'COPY $dir/Cargo.toml $dir/' and '$dir' to the docker-stub-sources.sh line" >&2
    exit 1
  fi
done

echo "build-images-offline: scripts/build-static.sh (cargo build --release --target $target, static)"
start=$SECONDS
scripts/build-static.sh
echo "build-images-offline: binaries built in $((SECONDS - start)) s"

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
sh scripts/image-rootfs.sh "$target_dir/$target/release" "$ctx/out"
# The runtime stage of the Dockerfile, with /out taken from this context instead of the
# build stage.
awk '/^FROM scratch AS runtime/ { on = 1 } on' Dockerfile | sed 's/--from=build //' >"$ctx/Dockerfile"
grep -q '^FROM scratch AS runtime' "$ctx/Dockerfile" || {
  echo "build-images-offline: no 'FROM scratch AS runtime' stage in Dockerfile" >&2; exit 1; }

echo "build-images-offline: docker build -t $image (FROM scratch, nothing pulled)"
# The classic builder: this engine has no BuildKit client (buildx), and it pulls nothing for
# `FROM scratch`.
if ! DOCKER_BUILDKIT=0 docker build -t "$image" "$ctx" >"$ctx/build.log" 2>&1; then
  cat "$ctx/build.log" >&2
  echo "build-images-offline: docker build failed" >&2
  exit 1
fi
docker image inspect "$image" --format 'build-images-offline: {{index .RepoTags 0}} {{.Id}} {{.Size}} bytes' \
  | awk '{ printf "%s %s %s %.1f MB\n", $1, $2, substr($3, 1, 19), $4 / 1e6 }'

scripts/nats-image-offline.sh
