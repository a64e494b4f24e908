# syntax=docker/dockerfile:1
# gemcache in a container: built with the Swift toolchain, run on slim Debian as a non-root user.
#
#   docker build -t gemcache .
#   docker run --rm -p 127.0.0.1:8080:8080 -v gemcache-data:/var/lib/gemcache/data gemcache
#
# docker-compose.yml does the same with ./proxy.conf and the keys from the environment (README,
# "Deployment"). Tests/GemcacheCoreTests/DeploymentFilesTests.swift keeps this file in step with the
# Makefile: the same build command and the same system packages.

FROM swift:6.3-bookworm AS build
# The Makefile's APT_PACKAGES: the LMDB, OpenSSL (libcrypto) and zlib headers, and pkg-config.
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends liblmdb-dev libssl-dev zlib1g-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.* ./
COPY Sources ./Sources
COPY Tests ./Tests
# The Makefile's build (its .build folder kept in a BuildKit cache between builds); then the binary
# and the Swift runtime libraries it links, for the run stage.
RUN --mount=type=cache,target=/src/.build \
    swift build -c release --product gemcache \
    && mkdir -p /staging/lib \
    && cp .build/release/gemcache /staging/gemcache \
    && ldd /staging/gemcache | awk '$3 ~ /^\/usr\/lib\/swift\// { print $3 }' | xargs -r cp -t /staging/lib/

FROM debian:bookworm-slim
# liblmdb0, libssl3 and zlib1g are the run-time halves of the -dev packages above; tzdata for the quota day
# (midnight America/Los_Angeles); ca-certificates for the https upstream; curl for the health check.
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        liblmdb0 libssl3 libstdc++6 zlib1g tzdata ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
# The binary's run path names /usr/lib/swift/linux, where the toolchain image keeps these libraries.
COPY --from=build /staging/lib/ /usr/lib/swift/linux/
COPY --from=build /staging/gemcache /usr/local/bin/gemcache
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/gemcache --shell /usr/sbin/nologin gemcache \
    && mkdir -p /var/lib/gemcache/data \
    && chown -R gemcache:gemcache /var/lib/gemcache
USER gemcache
WORKDIR /var/lib/gemcache
# Serve other containers (the default is loopback only); keep the store in the volume below.
ENV GEMCACHE_LISTEN_HOST=0.0.0.0 \
    GEMCACHE_LISTEN_PORT=8080 \
    GEMCACHE_STORE_PATH=/var/lib/gemcache/data
EXPOSE 8080
VOLUME ["/var/lib/gemcache/data"]
# /healthz answers 200 while the store is writable, 503 otherwise.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${GEMCACHE_LISTEN_PORT}/healthz" || exit 1
ENTRYPOINT ["gemcache"]
CMD ["serve"]
