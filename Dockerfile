# Build: the release binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin materializer

# Run: the binary, the topic configuration and the example recordings.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/materializer /usr/local/bin/materializer
WORKDIR /app
COPY sql ./sql
COPY fixtures ./fixtures
RUN useradd --system --uid 10001 materializer && mkdir -p /app/out && chown materializer /app/out
USER materializer
ENTRYPOINT ["materializer"]
CMD ["--help"]
