#!/usr/bin/env bash
# Warm reads of a fully cached file through the mount (FUSE passthrough, and without it) vs
# reading the cache file directly, page cache dropped before each run, for a MEM and an SSD
# tier (crates/cli/benches/passthrough.rs). Needs root. CISTERN_BENCH_MIB sets the size (1024).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p cistern-cli --bench passthrough "$@"
