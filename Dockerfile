# Multi-stage build of every Spanline binary (DESIGN §1). Dependencies are compiled in
# their own layer from the manifests alone, so editing one service rebuilds in seconds.
#
#   docker compose up --build
#
# On a machine without a container registry, use scripts/build-images-offline.sh instead.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# 1. Dependencies only: manifests plus empty targets.
COPY Cargo.toml Cargo.lock ./
COPY crates/tracekit/Cargo.toml crates/tracekit/
COPY crates/demokit/Cargo.toml crates/demokit/
COPY crates/e2e/Cargo.toml crates/e2e/
COPY collector/Cargo.toml collector/
COPY services/frontend/Cargo.toml services/frontend/
COPY services/user/Cargo.toml services/user/
COPY services/order/Cargo.toml services/order/
COPY services/payment/Cargo.toml services/payment/
RUN for d in crates/tracekit crates/demokit crates/e2e collector services/frontend services/user services/order services/payment; do \
      mkdir -p $d/src && echo 'fn main() {}' > $d/src/main.rs && touch $d/src/lib.rs; \
    done \
 && cargo build --release --locked --bins 2>/dev/null || true
# 2. The real sources.
COPY . .
RUN find crates collector services -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bins \
      -p collector -p frontend -p user-service -p order-service -p payment-service \
 && mkdir /out && cp target/release/collector target/release/frontend \
      target/release/user-service target/release/order-service target/release/payment-service /out/

FROM debian:bookworm-slim AS runtime
RUN useradd --system --uid 10001 --no-create-home spanline \
 && mkdir -p /data && chown spanline /data
COPY --from=build /out/ /usr/local/bin/
USER spanline
ENV COLLECTOR_DATA_DIR=/data
