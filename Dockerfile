# The one image: the `cistern` binary for every role (master, worker, fuse, csi, operator).
# docker build -t ghcr.io/cistern-io/cistern:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin cistern

FROM debian:bookworm-slim
# fuse3 for fusermount3 (the fallback when mount(2) is not allowed); ca-certificates for TLS UFS.
RUN apt-get update && apt-get install -y --no-install-recommends fuse3 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/cistern /usr/local/bin/cistern
ENTRYPOINT ["cistern"]
