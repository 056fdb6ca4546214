# syntax=docker/dockerfile:1
# The Trellis image: the one `trellis` binary, which runs any set of roles (all of them by
# default), on a small distroless base as a non-root user.
#
#   docker build -t trellis .                            # the server (the last stage)
#   docker build --target loadtest -t trellis-loadtest . # crates/loadtest, for load runs
#
# Dependencies are compiled in a layer of their own (cargo-chef): changing Trellis's code
# rebuilds only the workspace crates; changing Cargo.toml or Cargo.lock rebuilds the layer.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /src

# The dependency list of the workspace, and nothing else, so the next stage's cache key
# changes only when dependencies do.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p trellis-homeserver --bin trellis -p trellis-loadtest --bin trellis-loadtest \
 && mkdir -p /out/var/lib/trellis/media

FROM gcr.io/distroless/cc-debian12:nonroot AS loadtest
COPY --from=builder /src/target/release/trellis-loadtest /usr/local/bin/trellis-loadtest
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/trellis-loadtest"]

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="Trellis" \
      org.opencontainers.image.description="A Matrix homeserver: gateway, auth, rooms, sync and media roles in one binary" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /src/target/release/trellis /usr/local/bin/trellis
# Media blobs live here unless media.store is s3; mount a volume on it.
COPY --from=builder --chown=nonroot:nonroot /out/var/lib/trellis /var/lib/trellis
WORKDIR /var/lib/trellis
# Inside a container every port listens on all interfaces: 8008 the client API (gateway),
# 9100 gRPC between roles, 9090 metrics and health (the operations port).
ENV TRELLIS_HTTP__LISTEN=0.0.0.0:8008 \
    TRELLIS_GRPC__LISTEN=0.0.0.0:9100 \
    TRELLIS_METRICS__LISTEN=0.0.0.0:9090 \
    TRELLIS_MEDIA__PATH=/var/lib/trellis/media \
    TRELLIS_TELEMETRY__LOG_FORMAT=json
EXPOSE 8008 9100 9090
USER nonroot:nonroot
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/usr/local/bin/trellis", "health"]
ENTRYPOINT ["/usr/local/bin/trellis"]
CMD ["serve"]
