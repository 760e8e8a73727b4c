# syntax=docker/dockerfile:1
# The `vigil` binary in a small Debian image. Used by docker-compose.yml; build with
#   docker build -t vigil:local .
# The CLI shape is `vigil --config <path> <subcommand>` (monitor, lifecycle, migrate, replay,
# loadgen, quickstart); settings can also come from VIGIL__SECTION__KEY environment variables.

FROM rust:1-bookworm AS builder
# cmake for rdkafka's bundled librdkafka (its cmake-build feature); gcc, make, perl and zlib
# headers are already in the rust image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and build outputs between builds; the binary is copied
# out of the cached target folder in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p vigil \
    && install -m 0755 target/release/vigil /usr/local/bin/vigil

FROM debian:bookworm-slim
# ca-certificates for HTTPS webhooks, curl for the compose healthchecks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin vigil
COPY --from=builder /usr/local/bin/vigil /usr/local/bin/vigil
USER vigil
# /metrics and health endpoints of `vigil monitor`
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/vigil"]
CMD ["--help"]
