# syntax=docker/dockerfile:1
# pptpgw image, for people with a registry. Built with the same toolchain script CI runs
# (.ci/install-toolchains) and the same root filesystem recipe as `cargo xtask image`
# (deploy/image/rootfs.sh over deploy/image/packages: the C library from Debian packages, the
# stripped `pptpgw` with its eBPF object embedded, the default config; no shell). Both ways give
# the same runtime contents; `cargo xtask image` needs no registry and no container engine.

FROM debian:trixie-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gcc libc6-dev pkg-config \
      binutils mmdebstrap \
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --no-modify-path --profile minimal --default-toolchain none
WORKDIR /src
COPY . .
RUN .ci/install-toolchains
RUN cargo build --release --locked -p pptp-user \
 && objcopy --strip-unneeded target/release/pptpgw /pptpgw \
 && deploy/image/rootfs.sh /rootfs /pptpgw

FROM scratch
COPY --from=build /rootfs/ /
EXPOSE 1723/tcp 9723/tcp
ENTRYPOINT ["/usr/local/bin/pptpgw"]
CMD ["run", "--config", "/etc/pptpgw/pptpgw.toml"]
