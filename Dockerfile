# fletch's image, for users with a registry: `docker build -t REGISTRY/fletch:0.1.0 .`
# (deploy/build-image.sh builds the same image without one: podman + debootstrap).
# Multi-stage: the toolchain stays in the first stage; the image holds the binary, CA
# certificates and a non-root user. glibc only: the binary needs libc, libm, libgcc_s.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin fletch || true
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin fletch \
    && strip target/release/fletch

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 fletch \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent fletch
COPY --from=build /src/target/release/fletch /usr/local/bin/fletch
COPY config/fletch.example.toml /etc/fletch/fletch.example.toml
USER 10001:10001
# In a container the ports listen on every interface (the defaults are loopback only).
ENV FLETCH_HTTP__LISTEN=0.0.0.0:8080 \
    FLETCH_FLIGHT__LISTEN=0.0.0.0:50051
EXPOSE 8080 50051
# `fletch serve` drains on SIGTERM (http.shutdown_grace_ms); as PID 1 it gets the signal.
ENTRYPOINT ["/usr/local/bin/fletch"]
CMD ["serve"]
