# syntax=docker/dockerfile:1
# stallwatch-collector in a container. Build from the repository root:
#   docker build -f deploy/container/collector.Dockerfile -t stallwatch-collector .
# Run with its configuration and fleet PKI, and a volume for the history store:
#   docker run -d --name stallwatch-collector -p 8443:8443 -p 127.0.0.1:9464:9464 \
#     -v /etc/stallwatch:/etc/stallwatch:ro -v stallwatch-collector:/var/lib/stallwatch \
#     stallwatch-collector
# collector.toml must listen on 0.0.0.0 inside the container, and keep its store under
# /var/lib/stallwatch. The `tools` stage (`--target tools`) adds a shell, for one-off
# commands such as the fleet PKI set-up in deploy/compose.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target directory between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p stallwatch-collector --bin stallwatch-collector \
    && install -D -m 0755 target/release/stallwatch-collector /out/bin/stallwatch-collector \
    && install -d -m 0700 /out/state

FROM debian:bookworm-slim AS tools
COPY --from=build /out/bin/stallwatch-collector /usr/local/bin/stallwatch-collector
ENTRYPOINT ["/usr/local/bin/stallwatch-collector"]

# The default target: glibc and libgcc only, no shell, running as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/bin/stallwatch-collector /usr/local/bin/stallwatch-collector
COPY --from=build --chown=65532:65532 /out/state /var/lib/stallwatch
# The history store (SQLite): keep it on a volume.
VOLUME ["/var/lib/stallwatch"]
USER 65532:65532
# 8443: agents (HTTPS, mutual TLS); 9464: /metrics and the fleet page (plain HTTP).
EXPOSE 8443 9464
ENTRYPOINT ["/usr/local/bin/stallwatch-collector"]
CMD ["run", "--config", "/etc/stallwatch/collector.toml"]
