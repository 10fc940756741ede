#!/usr/bin/env bash
# The cache engine benchmark (crates/cli/benches/cache.rs): cold/warm sequential reads, random
# 4 KiB reads and eviction churn through a real FUSE mount on a SeaweedFS S3 server, each as a
# ratio to a reference measured in the same run. Needs root (FUSE) and `weed` on PATH.
# CISTERN_BENCH_MIB sets the object size (default 1024).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p cistern-cli --bench cache "$@"
