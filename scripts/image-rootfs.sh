#!/bin/sh
# Lays out the files of the Spanline runtime image (used by the Dockerfile's build stage and
# by scripts/build-images-offline.sh, so both paths produce the same image):
#
#   OUT/root/usr/local/bin/{collector,frontend,user-service,order-service,payment-service,
#                            notification-service,loadgen}
#   OUT/root/etc/passwd, OUT/root/etc/group   (user and group `spanline`, 10001)
#   OUT/root/tmp                              (1777, for SQLite's temporary files)
#   OUT/owned/data                            (the collector's data dir, owned by 10001)
#
#   scripts/image-rootfs.sh BIN_DIR OUT
# Fails unless every binary is statically linked (the image is FROM scratch).
set -eu
bin_dir=$1 out=$2
rm -rf "$out"
mkdir -p "$out/root/usr/local/bin" "$out/root/etc" "$out/root/tmp" "$out/owned/data"
for b in collector frontend user-service order-service payment-service notification-service loadgen; do
  if [ ! -x "$bin_dir/$b" ]; then
    echo "image-rootfs: $bin_dir/$b is missing" >&2; exit 1
  fi
  if readelf -d "$bin_dir/$b" 2>/dev/null | grep -q '(NEEDED)'; then
    echo "image-rootfs: $bin_dir/$b is dynamically linked; build with -C target-feature=+crt-static" >&2
    readelf -d "$bin_dir/$b" | grep '(NEEDED)' >&2
    exit 1
  fi
  cp "$bin_dir/$b" "$out/root/usr/local/bin/$b"
  # Line tables and symbols are for debugging on the host; the image needs none (a panic
  # still prints its message). Seven binaries, all symbols stripped.
  strip --strip-all "$out/root/usr/local/bin/$b" 2>/dev/null || true
done
printf 'root:x:0:0:root:/:/sbin/nologin\nspanline:x:10001:10001:spanline:/data:/sbin/nologin\n' >"$out/root/etc/passwd"
printf 'root:x:0:\nspanline:x:10001:\n' >"$out/root/etc/group"
chmod 1777 "$out/root/tmp"
chmod 0755 "$out/owned/data"
