# syntax=docker/dockerfile:1
# ucm-exporter container image: the exporter and the UCM simulator (for the demo stack in
# deploy/docker-compose.yml). Build: docker build -t ucm-exporter .
# scripts/docker-build-check.sh runs the same build and run steps without Docker.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
# Dependencies first, in their own layers: they change far less often than the sources, so an
# edit of src/ rebuilds only the crate itself. The stub sources are replaced below.
COPY Cargo.toml Cargo.lock build.rs ./
COPY crates/ucm-sim/Cargo.toml crates/ucm-sim/
RUN cargo fetch --locked
RUN mkdir -p src benches crates/ucm-sim/src/bin \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > crates/ucm-sim/src/bin/ucm-sim.rs \
    && for b in sim_serve ingest load; do echo 'fn main() {}' > "benches/$b.rs"; done \
    && touch src/lib.rs crates/ucm-sim/src/lib.rs \
    && cargo build --release --locked --workspace \
    && rm -rf src benches crates/ucm-sim/src
COPY src src
COPY benches benches
COPY crates crates
# The revision shown in ucm_exporter_build_info (the build context has no .git).
ARG REVISION=unknown
ENV UCM_EXPORTER_REVISION=${REVISION}
# COPY keeps the sources' old modification times: touch them so cargo rebuilds the crate.
RUN touch src/lib.rs src/main.rs crates/ucm-sim/src/lib.rs crates/ucm-sim/src/bin/ucm-sim.rs \
    && cargo build --release --locked --workspace \
    && install -m 0755 target/release/ucm-exporter target/release/ucm-sim /usr/local/bin/

FROM debian:${DEBIAN_RELEASE}-slim
ARG REVISION=unknown
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ucm-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Grandstream UCM IP PBX call detail records" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.documentation="README.md"
# CA certificates: a UCM with a publicly trusted certificate is verified against them. Not
# pinned to a version: the newest CA list and its security fixes matter more here.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ucm-exporter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/ucm-exporter --shell /usr/sbin/nologin ucm-exporter \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/ucm-exporter
COPY --from=build /usr/local/bin/ucm-exporter /usr/local/bin/ucm-sim /usr/local/bin/
# Numeric, so that runAsNonRoot policies can check it without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/ucm-exporter
VOLUME ["/var/lib/ucm-exporter"]
EXPOSE 9736
# bash is part of every Debian image: /dev/tcp needs no curl or wget in the image and no extra
# subcommand in the exporter. 200 is healthy; 401 also proves the server answers (basic auth
# covers /-/healthy). With TLS in --web.config.file, override this check (see README).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9736 && printf 'GET /-/healthy HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r -t 4 _ status _ <&3 && [[ $status == 200 || $status == 401 ]]"]
ENTRYPOINT ["ucm-exporter"]
