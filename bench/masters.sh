#!/usr/bin/env bash
# One master against three (Raft) in one run: metadata operations per second (cold walk, warm
# stat, re-listing) and the stall when the leader is SIGKILLed (bench/masters.py). Needs root
# (FUSE, drop_caches). About 2 minutes on 2 cores once built.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n "${CISTERN_BIN:-}" ]] || cargo build --release --bin cistern
exec python3 bench/masters.py "$@"
