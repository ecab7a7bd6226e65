# syntax=docker/dockerfile:1
# The Plexica platform binary. One image, one part per container:
#   plexica command-api | projections | query-api | dlq-worker | schema-registry | all

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and the build between image builds; the binary is
# copied out of the cache mount so that it ends up in the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release -p plexica \
 && install -D -m 0755 target/release/plexica /out/plexica

FROM debian:bookworm-slim AS runtime
# curl: for container health checks (GET /ready).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin plexica
COPY --from=builder /out/plexica /usr/local/bin/plexica
USER plexica:plexica
ENV HTTP_LISTEN=0.0.0.0:8080 \
    RUST_LOG=info
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/ready || exit 1
ENTRYPOINT ["/usr/local/bin/plexica"]
CMD ["all"]
