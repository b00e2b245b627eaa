# harper-shard for container CI (GitLab, Buildkite, CircleCI, Jenkins, Tekton; README.md has each recipe):
#
#   docker build -t harper-shard --build-arg HARPER_PACKAGE=harperdb@4.7.29 .
#   docker run --rm --user "$(id -u)" -v "$PWD:/work" harper-shard run examples/harper-shards.yml
#
# --user keeps the mounted checkout writable for the report. On `docker stop` (SIGTERM, then
# SIGKILL after 10 s) tini passes the SIGTERM on, and the tool tears every shard down and exits
# 143 well inside that time. .ci/image-test builds this image and runs those commands.
#
# Both stages are Debian bookworm, so the binary runs against the glibc it was linked with. The
# base images are build arguments so that a machine without Docker Hub can build against
# stand-ins of its own. Node 24: active LTS until 2028-04-30, one of the versions CI tests.

ARG BUILD_IMAGE=rust:1-slim-bookworm
ARG BASE_IMAGE=node:24-bookworm-slim

FROM ${BUILD_IMAGE} AS build
WORKDIR /src

# Dependencies first, against a placeholder main: this layer is reused until Cargo.toml or
# Cargo.lock change, so a source edit rebuilds only the crate itself.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && cargo build --locked --release --bin harper-shard

COPY src ./src
# The placeholder's build is newer than the copied sources' mtimes; touch so cargo sees the change.
RUN touch src/main.rs \
    && cargo build --locked --release --bin harper-shard


FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="harper-shard" \
      org.opencontainers.image.description="Run integration-test shards against real Harper servers, many at once, with nothing left behind." \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"

# tini is PID 1: it forwards `docker stop`'s SIGTERM to harper-shard, which then tears every
# shard down and exits 143, and it reaps whatever is orphaned. ca-certificates: the Checks API
# client trusts the system's roots. Versions are not pinned: bookworm's point releases replace
# them on the mirror, so a pin breaks the build, and the base image's tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /src/target/release/harper-shard /usr/local/bin/harper-shard

# The cache lives outside $HOME and, like /work, is writable by group 0: `docker run --user
# <uid>` runs in group 0 unless told otherwise, and must still find the pre-installed Harper
# and be able to install another. npm's own cache goes to /tmp for the same reason: a uid the
# image does not know gets HOME=/, where npm cannot create ~/.npm.
ENV HARPER_SHARD_CACHE_DIR=/var/cache/harper-shard \
    npm_config_cache=/tmp/.npm
RUN install -d -o node -g 0 -m 2775 "$HARPER_SHARD_CACHE_DIR" /work

# Numeric, so a cluster's runAsNonRoot can verify it: the image's `node` user, in group 0 as
# `docker run --user <uid>` is. The cache is shared with group 0, and harper-shard trusts a cache
# shared with a group only when it runs in that group: with the group `node` (1000) the warm-up
# below and a plain `docker run` would refuse it.
USER 1000:0
WORKDIR /work

# Optional: put Harper into the image's cache so jobs don't spend ~45 s on `npm install`.
# The cache is filled by one real run of a one-shard plan, which uses the binary's own install
# code and, as a bonus, proves the image can boot Harper. Everything it leaves outside the cache
# goes; inside it, group 0 gets the owner's rights, and directories keep their setgid bit.
ARG HARPER_PACKAGE=""
RUN if [ -n "$HARPER_PACKAGE" ]; then \
        warm="$(mktemp -d)" \
        && printf 'version: 1\nharper:\n  package: "%s"\nshards:\n  - name: warm-cache\n    run: "true"\n' \
            "$HARPER_PACKAGE" > "$warm/plan.yml" \
        && HARPER_SHARD_WORK_DIR=/tmp/hs-warm harper-shard run "$warm/plan.yml" --report-dir "$warm/report" \
        && rm -rf "$warm" /tmp/hs-warm "$npm_config_cache" \
        && chmod -R g=u "$HARPER_SHARD_CACHE_DIR" \
        && find "$HARPER_SHARD_CACHE_DIR" -type d -exec chmod g+s {} +; \
    fi

# Where the image comes from, as the OCI labels say it: .github/workflows/release.yml passes
# these (GHCR links the package to its repository through `source`). Last, so that a new
# revision rebuilds no layer.
ARG IMAGE_SOURCE=""
ARG IMAGE_VERSION=""
ARG IMAGE_REVISION=""
ARG IMAGE_CREATED=""
ARG IMAGE_DOCUMENTATION=""
LABEL org.opencontainers.image.source="${IMAGE_SOURCE}" \
      org.opencontainers.image.version="${IMAGE_VERSION}" \
      org.opencontainers.image.revision="${IMAGE_REVISION}" \
      org.opencontainers.image.created="${IMAGE_CREATED}" \
      org.opencontainers.image.documentation="${IMAGE_DOCUMENTATION}"

ENTRYPOINT ["tini", "--", "harper-shard"]
CMD ["run"]
