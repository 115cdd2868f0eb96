# syntax=docker/dockerfile:1
# pptpgw image: built with the same toolchain script CI runs (.ci/install-toolchains: the pinned
# userspace toolchain, the pinned nightly + rust-src for the eBPF object, bpf-linker 0.10.4),
# shipped as a small Debian runtime holding only the `pptpgw` binary (the eBPF object is embedded).

FROM debian:trixie-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gcc libc6-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --no-modify-path --profile minimal --default-toolchain none
WORKDIR /src
COPY . .
RUN .ci/install-toolchains
RUN cargo build --release --locked -p pptp-user \
 && install -D -m 0755 target/release/pptpgw /out/pptpgw

FROM debian:trixie-slim
COPY --from=build /out/pptpgw /usr/local/bin/pptpgw
COPY config/pptpgw.toml /etc/pptpgw/pptpgw.toml
# The control API socket lives here; the secrets come from a mount (see deploy/kubernetes).
RUN mkdir -p /run/pptpgw /etc/ppp
EXPOSE 1723/tcp 9723/tcp
ENTRYPOINT ["/usr/local/bin/pptpgw"]
CMD ["run", "--config", "/etc/pptpgw/pptpgw.toml"]
