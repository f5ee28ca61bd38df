# Multi-stage build of every Spanline binary (DESIGN §1) into one small image:
# seven statically linked binaries on `scratch` (the collector, the five services, loadgen), run as the non-root user 10001.
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
ENV CARGO_TERM_COLOR=never
# 1. Dependencies only, from the manifests alone (our crates as empty stubs): this layer is
#    rebuilt only when a Cargo.toml or Cargo.lock changes.
COPY Cargo.toml Cargo.lock ./
COPY crates/tracekit/Cargo.toml crates/tracekit/
COPY crates/demokit/Cargo.toml crates/demokit/
COPY crates/e2e/Cargo.toml crates/e2e/
COPY crates/loadgen/Cargo.toml crates/loadgen/
COPY collector/Cargo.toml collector/
COPY services/frontend/Cargo.toml services/frontend/
COPY services/user/Cargo.toml services/user/
COPY services/order/Cargo.toml services/order/
COPY services/payment/Cargo.toml services/payment/
COPY services/notification/Cargo.toml services/notification/
# scripts/build-static.sh: cargo build --release of the seven binaries, glibc linked
# statically (nothing to load at run time: the image is `scratch`).
COPY scripts/docker-stub-sources.sh scripts/build-static.sh scripts/
RUN sh scripts/docker-stub-sources.sh crates/tracekit crates/demokit crates/e2e crates/loadgen collector \
      services/frontend services/user services/order services/payment services/notification \
 && sh scripts/build-static.sh
# 2. Our crates, the libraries first, then each binary's crate in its own layer: an edit to a
#    service recompiles that service and the services after it, nothing else. Services come
#    in dependency order (their lib crates hold the typed clients their callers use: order
#    uses payment's, notification payment's event type, the frontend user's and order's),
#    so the frontend, last, rebuilds quickest. The copied sources may be older than the stubs they replace:
#    build-static.sh DIR touches them first.
COPY crates/ crates/
RUN sh scripts/build-static.sh crates
COPY collector/ collector/
RUN sh scripts/build-static.sh collector
COPY services/payment/ services/payment/
RUN sh scripts/build-static.sh services/payment
COPY services/notification/ services/notification/
RUN sh scripts/build-static.sh services/notification
COPY services/user/ services/user/
RUN sh scripts/build-static.sh services/user
COPY services/order/ services/order/
RUN sh scripts/build-static.sh services/order
COPY services/frontend/ services/frontend/
RUN sh scripts/build-static.sh services/frontend
COPY scripts/image-rootfs.sh scripts/
RUN sh scripts/image-rootfs.sh "target/$(rustc -vV | sed -n 's/^host: //p')/release" /out

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
      org.opencontainers.image.description="Spanline: collector, frontend, user-service, order-service, payment-service, notification-service, loadgen (static binaries)" \
      org.opencontainers.image.licenses="Apache-2.0"
CMD ["collector"]
