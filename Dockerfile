# syntax=docker/dockerfile:1.7
#
# weir's container image: weir-operator and weir-proxy, built from this workspace.
#
#   docker build -t ghcr.io/weir-dev/weir:0.1.0 .                  # both binaries (the Helm chart's image)
#   docker build --target operator -t ghcr.io/weir-dev/weir-operator:0.1.0 .
#   docker build --target proxy -t ghcr.io/weir-dev/weir-proxy:0.1.0 .
#
# Every target holds both binaries and differs only in its ENTRYPOINT; the chart sets each
# container's command explicitly, so one image serves both Deployments. The runtime stage
# is distroless (glibc, CA certificates, no shell, no package manager) and runs as the
# numeric non-root user 65532, the user the chart's securityContext names. Nothing is
# written to the file system at run time, so the root file system can be read-only.

ARG RUST_VERSION=1.95

# cargo-chef splits the build: the dependencies are compiled from a recipe of the
# manifests (Cargo.toml, Cargo.lock) in a layer of their own, cached until those change;
# a source change rebuilds only weir's own crates.
FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
        --package weir-proxy --package weir-operator
COPY . .
RUN cargo build --release --locked --package weir-proxy --package weir-operator --bins \
    && mkdir -p /out \
    && cp target/release/weir-proxy target/release/weir-operator /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="weir" \
      org.opencontainers.image.description="Kubernetes ingress controller and operator with TypeScript plugins: weir-operator and weir-proxy" \
      org.opencontainers.image.source="https://github.com/weir-dev/weir" \
      org.opencontainers.image.url="https://github.com/weir-dev/weir" \
      org.opencontainers.image.documentation="https://github.com/weir-dev/weir/blob/main/docs/install.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="weir" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /out/weir-proxy /out/weir-operator /usr/local/bin/
USER 65532:65532
WORKDIR /

# weir-operator: metrics, /healthz and /readyz on 9090.
FROM runtime AS operator
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/weir-operator"]

# weir-proxy: traffic on 8080 (plain) and 8443 (TLS), admin on 9901, probes and metrics on 9902.
FROM runtime AS proxy
EXPOSE 8080 8443 9901 9902
ENTRYPOINT ["/usr/local/bin/weir-proxy"]

# The default target: both binaries, weir-proxy by default.
FROM proxy AS weir
