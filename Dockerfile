# syntax=docker/dockerfile:1
#
# The flagpole container image, laid out like flagd's (ghcr.io/open-feature/flagd):
#   - a static binary (musl), so it runs in the distroless "static" base and also when copied out into
#     any other image, as the flagd testbed image does with `COPY --from=<base> /flagd-build /flagd`;
#   - the binary at /flagd-build (that testbed path) and at /usr/local/bin/flagpole;
#   - ENTRYPOINT ["/flagd-build"], so the arguments are the same as flagd's: `start --uri ...`;
#   - user 65532 (distroless "nonroot"), nothing written to the filesystem (runs with a read-only root).
# Build:   docker build -t flagpole:0.1.0 .
# Run:     docker run --rm -p 8013-8016:8013-8016 -v "$PWD/examples:/flags:ro" flagpole:0.1.0 \
#              start --uri file:/flags/flags.json
# No container engine runs in this project's CI: scripts/test-image.sh checks this file's runtime stage,
# runs the build step's cargo command below for the machine's musl target, checks that the binary is
# static, and runs it as user 65532 in this layout (a chroot holding only the binary and a flag file).
# The static build allocates with mimalloc (daemon/src/main.rs), since musl's allocator halves the
# throughput.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
# musl-gcc builds the C parts of the dependencies (ring) for the musl target.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The musl target of the build machine's own architecture (x86_64 or aarch64): multi-platform builds run
# natively or under emulation, never as a cross-compile. The target directory is a cache, so the binary
# is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
    && rustup target add "$target" \
    && cargo build --release --locked -p flagpole --bin flagpole --target "$target" \
    && install -D -m 0755 "target/$target/release/flagpole" /out/flagpole

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="flagpole" \
      org.opencontainers.image.description="A drop-in replacement for the flagd feature-flag daemon" \
      org.opencontainers.image.licenses="Apache-2.0"
# Two real files rather than a symlink: a symlink copied out of this image would dangle.
COPY --from=builder /out/flagpole /usr/local/bin/flagpole
COPY --from=builder /out/flagpole /flagd-build
USER 65532:65532
# evaluation, management (/healthz, /readyz, /metrics), sync, OFREP
EXPOSE 8013 8014 8015 8016
ENTRYPOINT ["/flagd-build"]
