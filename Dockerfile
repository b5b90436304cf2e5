# The materializer image: the stripped release binary on a distroless runtime
# (glibc, libgcc, CA certificates; no shell, no package manager), with the
# example topics (sql/) and recordings (fixtures/).
#
#   docker build -t materializer .
#   podman build --format docker -t materializer .   # keeps the HEALTHCHECK
#
# Needs BuildKit (Docker 23 and later) or buildah/podman, for the cache mount.
# Behind a TLS-intercepting proxy, hand cargo the host's CA bundle while it
# fetches crates: --secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt
# Base images from a mirror: --build-arg RUST_IMAGE=... --build-arg RUNTIME_IMAGE=...
# scripts/container-test.sh builds this image and checks it.

ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
ENV CARGO_HOME=/usr/local/cargo CARGO_TERM_COLOR=never
WORKDIR /src

# 1. The dependencies, in their own layer: the manifests, the lock file and
#    empty sources. Rebuilt only when a Cargo.toml or Cargo.lock changes.
COPY Cargo.toml Cargo.lock ./
COPY crates/materializer-core/Cargo.toml crates/materializer-core/
COPY crates/materializer-cluster/Cargo.toml crates/materializer-cluster/
COPY crates/nakadi-testkit/Cargo.toml crates/nakadi-testkit/
RUN mkdir -p src crates/materializer-core/src crates/materializer-cluster/src \
        crates/nakadi-testkit/src tests/it benches/pipeline \
    && touch src/lib.rs crates/materializer-core/src/lib.rs \
        crates/materializer-cluster/src/lib.rs crates/nakadi-testkit/src/lib.rs \
    && for main in src/main.rs crates/nakadi-testkit/src/main.rs \
        tests/it/main.rs benches/pipeline/main.rs; do echo 'fn main() {}' > "$main"; done
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=secret,id=cacert,target=/etc/ssl/certs/ca-certificates.crt \
    cargo build --release --locked

# 2. The engine. The copied sources may be older than the empty ones built
#    above: touching them makes cargo rebuild the crate.
COPY crates/materializer-core crates/materializer-core
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=secret,id=cacert,target=/etc/ssl/certs/ca-certificates.crt \
    find crates/materializer-core -name '*.rs' -exec touch {} + \
    && cargo build --release --locked

# 3. The cluster roles (Ballista's scheduler and executor with the engine's
#    plan node).
COPY crates/materializer-cluster crates/materializer-cluster
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=secret,id=cacert,target=/etc/ssl/certs/ca-certificates.crt \
    find crates/materializer-cluster -name '*.rs' -exec touch {} + \
    && cargo build --release --locked

# 4. The command line, the HTTP API and the console (src/): a change here
#    rebuilds only the root package.
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=secret,id=cacert,target=/etc/ssl/certs/ca-certificates.crt \
    find src -name '*.rs' -exec touch {} + \
    && cargo build --release --locked \
    && install -m 0755 target/release/materializer /usr/local/bin/materializer \
    && install -d -m 0775 /staging/data

# The runtime: the binary (owned by root) and /data, the default output,
# writable by group 0 so that any uid in group 0 can write it (OpenShift's
# arbitrary uids, --user 12345:0).
FROM ${RUNTIME_IMAGE}
COPY --from=build /usr/local/bin/materializer /usr/local/bin/materializer
COPY --from=build --chown=10001:0 /staging/ /
WORKDIR /app
COPY sql ./sql
COPY fixtures ./fixtures
# serve listens on all interfaces and so refuses to start without API tokens
# (--api-token-file, MATERIALIZER_API_TOKEN_FILE, MATERIALIZER_API_TOKENS).
# MATERIALIZER_IN_CONTAINER makes a run warn when its output folder is not a
# mounted volume (the files would be lost with the container).
ENV MATERIALIZER_OUTPUT=/data \
    MATERIALIZER_LISTEN=0.0.0.0:8000 \
    MATERIALIZER_IN_CONTAINER=1
USER 10001:0
# 8000: serve. The cluster roles (`cluster scheduler`, `cluster executor`)
# listen on 50050 (scheduler) and 50051/50052 (executor: Flight, gRPC).
EXPOSE 8000 50050 50051 50052
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/materializer", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/materializer"]
CMD ["--help"]
