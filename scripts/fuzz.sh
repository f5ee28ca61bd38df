#!/usr/bin/env bash
# Runs every cargo fuzz target for a set time: FUZZ_SECONDS per target (default 10).
# Needs the nightly toolchain and cargo-fuzz. Seeds are in fuzz/seeds/<target>/; the
# working corpus grows in fuzz/corpus/<target>/ (ignored by git), crashes land in
# fuzz/artifacts/<target>/. Exits non-zero when a target crashed.
#   FUZZ_SECONDS=60 scripts/fuzz.sh            # every target
#   scripts/fuzz.sh otlp_json zipkin           # some targets
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-10}"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log="$(mktemp)"
    echo "== $target: ${seconds}s"
    if cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=1024 2>"$log"; then
        status=ok
    else
        status=CRASH
        failed+=("$target")
    fi
    # libFuzzer's last status line: executions, speed, coverage.
    summary="$(grep -E '^#[0-9]+' "$log" | tail -1 || true)"
    runs="$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1 || true)"
    echo "   $status: ${runs:-no summary} | ${summary}"
    [ "$status" = ok ] || tail -40 "$log"
    rm -f "$log"
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
echo "all targets ran ${seconds}s without a crash"
