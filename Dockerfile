# syntax=docker/dockerfile:1
# Qetta Connect: one static-ish binary (rustls, bundled SQLite) on Debian slim.
#
#   docker build -t qetta:latest .
#   docker run --rm -p 8080:8080 -e QETTA_SANDBOX=on qetta:latest      # a sandbox demo
#
# Production settings (PostgreSQL, Redis, secrets): deploy/docker-compose.yml, deploy/k8s/ and
# docs/DEPLOYMENT.md. The tags below are pinned to a release line; pin them by digest
# (`rust:1.95-slim-trixie@sha256:…`) in your own registry for reproducible builds.

############################ build ############################
FROM rust:1.95-slim-trixie AS build
WORKDIR /src
# Only what the build reads (see .dockerignore): the workspace manifests, the lock file and the
# crates (migrations, web assets and the sandbox's key are embedded at compile time).
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# The same command .ci/deploy-check checks: release profile, the lock file as committed.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p qetta \
 && install -m 0755 target/release/qetta /usr/local/bin/qetta

############################ runtime ############################
FROM debian:trixie-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 qetta \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin qetta \
 && install -d -o 10001 -g 10001 -m 0700 /data
COPY --from=build /usr/local/bin/qetta /usr/local/bin/qetta

# The data directory holds the embedded SQLite database and generated secrets when no PostgreSQL
# and no secrets are configured (a single-instance or demo run). With PostgreSQL it stays empty.
VOLUME ["/data"]
ENV QETTA_DATA_DIR=/data \
    HOST=0.0.0.0 \
    PORT=8080 \
    QETTA_LOG_FORMAT=json
WORKDIR /data
USER 10001:10001
EXPOSE 8080

# No shell or curl needed: the binary probes itself. `/ready` (the database answers); a Redis
# outage alone does not make the container unhealthy, the service runs on its fallbacks then.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/qetta", "health", "--ignore", "redis"]

ENTRYPOINT ["/usr/local/bin/qetta"]
CMD ["serve"]
