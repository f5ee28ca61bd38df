# Multi-stage build of every Spanline binary (DESIGN §1) into one small image:
# five statically linked binaries on `scratch`, run as the non-root user 10001.
#
#   docker compose up --build        (or: docker-compose up --build)
#
# Without a container registry (nothing to pull), scripts/build-images-offline.sh builds the
# same image: it compiles the binaries on the host and assembles the `runtime` stage below,
# which it reads from this file.

ARG RUST_IMAGE=rust:1.95-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# glibc, linked statically: no shared libraries needed at run time. Name lookups (collector,
# payment, ...) use glibc's built-in files + dns resolver, which needs no NSS modules.
ENV RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_TERM_COLOR=never
# 1. Dependencies only, from the manifests alone: this layer is rebuilt only when a
#    Cargo.toml or Cargo.lock changes, so an edit to one service recompiles just our crates.
COPY Cargo.toml Cargo.lock ./
COPY crates/tracekit/Cargo.toml crates/tracekit/
COPY crates/demokit/Cargo.toml crates/demokit/
COPY crates/e2e/Cargo.toml crates/e2e/
COPY collector/Cargo.toml collector/
COPY services/frontend/Cargo.toml services/frontend/
COPY services/user/Cargo.toml services/user/
COPY services/order/Cargo.toml services/order/
COPY services/payment/Cargo.toml services/payment/
COPY scripts/docker-stub-sources.sh scripts/
RUN sh scripts/docker-stub-sources.sh crates/tracekit crates/demokit crates/e2e collector \
      services/frontend services/user services/order services/payment \
 && target=$(rustc -vV | sed -n 's/^host: //p') \
 && cargo build --release --locked --target "$target" \
      -p collector -p frontend -p user-service -p order-service -p payment-service
# 2. The real sources. Their timestamps may be older than the stubs', so touch them.
COPY . .
RUN find crates collector services -name '*.rs' -exec touch {} + \
 && target=$(rustc -vV | sed -n 's/^host: //p') \
 && cargo build --release --locked --target "$target" \
      -p collector -p frontend -p user-service -p order-service -p payment-service \
 && sh scripts/image-rootfs.sh "target/$target/release" /out

# ---------------------------------------------------------------------------------------------
# The runtime image. scripts/build-images-offline.sh builds from this stage alone (everything
# from the next line to the end of the file), with `/out` taken from its own build context.
FROM scratch AS runtime
COPY --from=build /out/root/ /
COPY --from=build --chown=10001:10001 /out/owned/ /
ENV PATH=/usr/local/bin \
    COLLECTOR_DATA_DIR=/data
USER 10001:10001
LABEL org.opencontainers.image.title="spanline" \
      org.opencontainers.image.description="Spanline: collector, frontend, user-service, order-service, payment-service (static binaries)" \
      org.opencontainers.image.licenses="Apache-2.0"
CMD ["collector"]
