# syntax=docker/dockerfile:1
# stallwatch-agent in a container. Build from the repository root:
#   docker build -f deploy/container/agent.Dockerfile -t stallwatch-agent .
# Run with the agent's bundle and a volume for its spool (and UDP 4433-4434 published when
# its plan runs a relay):
#   docker run -d --name stallwatch-agent \
#     -v /etc/stallwatch/sg-4g-1.bundle.pem:/etc/stallwatch/agent.bundle.pem:ro \
#     -v stallwatch-agent:/var/lib/stallwatch \
#     stallwatch-agent run --collector https://collector.example.net:8443 \
#       --bundle /etc/stallwatch/agent.bundle.pem
# The bundle must be readable by uid 65532 (the image's user).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target directory between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p stallwatch-agent --bin stallwatch-agent \
    && install -D -m 0755 target/release/stallwatch-agent /out/bin/stallwatch-agent \
    && install -d -m 0700 /out/state

# glibc and libgcc only, no shell, running as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/bin/stallwatch-agent /usr/local/bin/stallwatch-agent
COPY --from=build --chown=65532:65532 /out/state /var/lib/stallwatch
# The report spool: keep it on a volume so a restart loses nothing.
VOLUME ["/var/lib/stallwatch"]
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/stallwatch-agent"]
CMD ["run", "--config", "/etc/stallwatch/agent.toml"]
