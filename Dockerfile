# syntax=docker/dockerfile:1.7
# The Switchboard images from one build: static musl binaries on distroless/static, non-root.
#
#   docker build --target operator     -t ghcr.io/switchboard/switchboard-operator:dev .
#   docker build --target registrar    -t ghcr.io/switchboard/switchboard-registrar:dev .
#   docker build --target provisioning -t ghcr.io/switchboard/switchboard-provisioning:dev .
#
# Rust on Alpine targets x86_64/aarch64-unknown-linux-musl and links statically by default;
# rustls + ring (no OpenSSL) keep the binaries free of shared libraries.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-alpine AS build
RUN apk add --no-cache musl-dev gcc make perl
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p switchboard-operator -p switchboard-registrar -p switchboard-provisioning \
 && mkdir -p /out \
 && cp target/release/switchboard-operator target/release/switchboard-registrar target/release/switchboard-provisioning /out/ \
 && strip /out/* \
 && ! ldd /out/switchboard-registrar 2>/dev/null | grep -q '=>' \
 && ! ldd /out/switchboard-provisioning 2>/dev/null | grep -q '=>' \
 && /out/switchboard-registrar --version \
 && /out/switchboard-operator --version \
 && /out/switchboard-provisioning --version

FROM gcr.io/distroless/static-debian12:nonroot AS operator
LABEL org.opencontainers.image.title="switchboard-operator" \
      org.opencontainers.image.description="Switchboard operator: SIP resources to registrar config" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/switchboard-operator /usr/local/bin/switchboard-operator
USER 65532:65532
EXPOSE 8080/tcp
ENTRYPOINT ["/usr/local/bin/switchboard-operator"]

FROM gcr.io/distroless/static-debian12:nonroot AS registrar
LABEL org.opencontainers.image.title="switchboard-registrar" \
      org.opencontainers.image.description="Switchboard SIP registrar/proxy" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/switchboard-registrar /usr/local/bin/switchboard-registrar
USER 65532:65532
EXPOSE 5060/udp 5060/tcp 5061/tcp 9090/tcp
ENTRYPOINT ["/usr/local/bin/switchboard-registrar"]

FROM gcr.io/distroless/static-debian12:nonroot AS provisioning
LABEL org.opencontainers.image.title="switchboard-provisioning" \
      org.opencontainers.image.description="Switchboard desk-phone provisioning over HTTPS" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/switchboard-provisioning /usr/local/bin/switchboard-provisioning
USER 65532:65532
EXPOSE 8443/tcp
ENTRYPOINT ["/usr/local/bin/switchboard-provisioning"]
