#!/usr/bin/env bash
# Before/after timings of the tracekit hot paths (BENCHMARKS.md §4.1): builds one small
# harness twice, against tracekit at BASE (default: main) and at the working tree, and runs
# the two alternately on the same operations, so both see the same machine load.
# With valgrind installed, also prints instructions per operation (callgrind).
#
#   scripts/bench-paired.sh                 # BASE=main, 3 alternations, 2M operations
#   BASE=ad95eb8 RUNS=5 scripts/bench-paired.sh
#
# The harness uses the exporter API of 01d0330 and later (`export(&[Box<SpanData>])`), so
# BASE must be that commit or a later one.
#
# Operations: a sampled span (4 attributes, batch processor with a void exporter, flushed
# every 1024 spans outside the timed region), an unsampled span, traceparent extract and
# inject on a 6-header map. Builds in a temporary directory (removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

base=${BASE:-main}
runs=${RUNS:-3}
n=${N:-2000000}
tmp=$(mktemp -d)
cleanup() {
  git worktree remove --force "$tmp/base-tree" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

git worktree add --detach "$tmp/base-tree" "$base" >/dev/null
here=$PWD

harness() { # dir tracekit-path
  mkdir -p "$1/src"
  cat >"$1/Cargo.toml" <<EOF
[package]
name = "tracekit-paired"
version = "0.1.0"
edition = "2024"
publish = false

[workspace]

[dependencies]
tracekit = { path = "$2" }
http = "1"

[profile.release]
debug = "line-tables-only"
EOF
  cat >"$1/src/main.rs" <<'EOF'
use std::hint::black_box;
use std::time::{Duration, Instant};

use tracekit::export::{BatchConfig, BatchSpanProcessor, ExportError, ExportOutcome, SpanExporter};
use tracekit::propagation::{Baggage, Propagator};
use tracekit::{Resource, Sampler, SpanContext, SpanData, Tracer};

struct Void;

impl SpanExporter for Void {
    async fn export(&mut self, _b: &[Box<SpanData>]) -> Result<ExportOutcome, ExportError> {
        Ok(ExportOutcome::Accepted)
    }
}

#[inline(never)]
fn span(t: &Tracer) {
    let mut s = t.span("foo").start();
    s.set_attribute("key1", false);
    s.set_attribute("key2", "hello");
    s.set_attribute("key3", 123.456);
    s.set_attribute("key4", 123i64);
    s.end();
}

#[inline(never)]
fn extract(p: &Propagator, h: &http::HeaderMap) {
    black_box(p.extract(black_box(h)));
}

#[inline(never)]
fn inject(p: &Propagator, cx: &SpanContext, bag: &Baggage, h: &mut http::HeaderMap) {
    p.inject(cx, bag, h);
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    let n: u64 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let sampler = if what == "unsampled" { Sampler::AlwaysOff } else { Sampler::AlwaysOn };
    let t = Tracer::builder(Resource::new("x", None, []))
        .with_sampler(sampler)
        .with_processor(BatchSpanProcessor::new(Void, BatchConfig::default()))
        .build();
    let mut h = http::HeaderMap::new();
    for (k, v) in [
        ("host", "localhost:8080"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("content-type", "application/json"),
        ("content-length", "48"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ] {
        h.insert(k, v.parse().expect("header value"));
    }
    let prop = Propagator::new(true, false);
    let cx = prop.extract(&h).parent.expect("valid traceparent");
    let bag = Baggage::default();
    let mut total = Duration::ZERO;
    let mut left = n;
    while left > 0 {
        let k = left.min(1024);
        let s = Instant::now();
        for _ in 0..k {
            match what.as_str() {
                "extract" => extract(&prop, &h),
                "inject" => inject(&prop, black_box(&cx), &bag, &mut h),
                _ => span(black_box(&t)),
            }
        }
        total += s.elapsed();
        t.force_flush(Duration::from_secs(10)).expect("flush");
        left -= k;
    }
    println!("{:.1}", total.as_nanos() as f64 / n as f64);
}
EOF
}

harness "$tmp/h-base" "$tmp/base-tree/crates/tracekit"
harness "$tmp/h-head" "$here/crates/tracekit"
echo "Building the harness against $base and against the working tree..."
(cd "$tmp/h-base" && CARGO_TARGET_DIR=$tmp/t-base cargo build --release --quiet)
(cd "$tmp/h-head" && CARGO_TARGET_DIR=$tmp/t-head cargo build --release --quiet)
bb=$tmp/t-base/release/tracekit-paired
bh=$tmp/t-head/release/tracekit-paired

echo
echo "| operation | $base, ns/op | working tree, ns/op | instructions/op $base -> working tree |"
echo "|---|---|---|---|"
for op in sampled unsampled extract inject; do
  b=() h=()
  for _ in $(seq 1 "$runs"); do
    b+=("$("$bb" "$op" "$n")")
    h+=("$("$bh" "$op" "$n")")
  done
  ir="-"
  if command -v valgrind >/dev/null 2>&1; then
    fn=tracekit_paired::span
    case $op in extract) fn=tracekit_paired::extract ;; inject) fn=tracekit_paired::inject ;; esac
    count() {
      valgrind --tool=callgrind --callgrind-out-file="$tmp/cg" --collect-atstart=no \
        --toggle-collect="$fn" "$1" "$op" 20000 >/dev/null 2>&1
      callgrind_annotate "$tmp/cg" 2>/dev/null |
        awk '/PROGRAM TOTALS/ {gsub(",", "", $1); printf "%d", $1 / 20000}'
    }
    ir="$(count "$bb") -> $(count "$bh")"
  fi
  echo "| $op | ${b[*]} | ${h[*]} | $ir |"
done
