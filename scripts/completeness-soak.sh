#!/usr/bin/env bash
# Completeness soak (issue "whole traces"): 200 orders while each service exports after its
# own random delay of up to 3 s; every `?wait=15` answer is checked against the trace as
# finally stored. CI runs a 20-order round of the same test (crates/e2e/tests/completeness_soak.rs).
#   SOAK_ORDERS (200), SOAK_MAX_DELAY_MS (3000), SOAK_SEED (random; printed) override.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked
SOAK_ORDERS="${SOAK_ORDERS:-200}" SOAK_MAX_DELAY_MS="${SOAK_MAX_DELAY_MS:-3000}" \
  cargo test -p spanline-e2e --test completeness_soak --locked -- --nocapture
