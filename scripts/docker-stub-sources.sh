#!/bin/sh
# Used by the Dockerfile's dependency layer: given the workspace manifests alone, creates an
# empty source file for every target Cargo will look for (src/lib.rs, and each [lib],
# [[bin]], [[bench]], [[test]] and [[example]] by `path` or by name), so that `cargo build`
# compiles every dependency in a layer that only changes with the manifests. The real
# sources, copied later, replace these files (a crate without a library keeps an empty
# src/lib.rs, which is harmless).
#
#   scripts/docker-stub-sources.sh DIR...     (each DIR holds a Cargo.toml)
set -eu
for dir in "$@"; do
  mkdir -p "$dir/src"
  [ -e "$dir/src/lib.rs" ] || : >"$dir/src/lib.rs"
  awk -v dir="$dir" '
    function flush() {
      if (kind == "") return
      f = path
      if (f == "" && name != "") {
        if (kind == "bin") f = "src/bin/" name ".rs"
        else if (kind == "bench") f = "benches/" name ".rs"
        else if (kind == "test") f = "tests/" name ".rs"
        else if (kind == "example") f = "examples/" name ".rs"
      }
      if (f != "") print dir "/" f
      kind = ""; name = ""; path = ""
    }
    /^[[:space:]]*\[/ {
      flush()
      if ($0 ~ /^[[:space:]]*\[\[(bin|bench|test|example)\]\]/) {
        kind = $0; gsub(/[][[:space:]]/, "", kind)
      } else if ($0 ~ /^[[:space:]]*\[lib\]/) {
        kind = "lib"
      }
      next
    }
    kind != "" && /^[[:space:]]*name[[:space:]]*=/ { v = $0; sub(/^[^=]*=[[:space:]]*"/, "", v); sub(/".*/, "", v); name = v }
    kind != "" && /^[[:space:]]*path[[:space:]]*=/ { v = $0; sub(/^[^=]*=[[:space:]]*"/, "", v); sub(/".*/, "", v); path = v }
    END { flush() }
  ' "$dir/Cargo.toml" | while read -r f; do
    if [ ! -e "$f" ]; then
      mkdir -p "$(dirname "$f")"
      case "$f" in
        */lib.rs) : >"$f" ;;
        *) echo 'fn main() {}' >"$f" ;;
      esac
    fi
  done
done
