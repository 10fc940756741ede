#!/usr/bin/env bash
# Runs the main job on the embedded default: builds cistern, makes local sample data, serves it
# with `cistern up -f examples/demo.yaml` (master, worker, FUSE mount at /mnt/cistern/default/demo),
# reads it through the mount, prints `cistern get dataset`, then stops (Ctrl-C equivalent).
# `examples/demo.sh --keep` leaves it running in the foreground instead; `--ha` serves it with
# three masters (examples/demo-ha.yaml), kills the leader and shows the quorum.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p cistern-cli
bin=target/release/cistern
data=/tmp/cistern-demo/data
if [ ! -d "$data" ]; then
  mkdir -p "$data/images" "$data/labels"
  for i in $(seq 1 50); do head -c $((4096 * i)) /dev/urandom > "$data/images/img-$i.bin"; echo "label $i" > "$data/labels/$i.txt"; done
  head -c $((64 << 20)) /dev/urandom > "$data/shard-000.bin"
  echo "Cistern demo data" > "$data/README.txt"
fi
if [ "${1:-}" = "--keep" ]; then exec "$bin" up -f examples/demo.yaml; fi
if [ "${1:-}" = "--ha" ]; then
  "$bin" up -f examples/demo-ha.yaml & up=$!
  trap 'kill -TERM $up 2>/dev/null; wait $up' EXIT
  mnt=/mnt/cistern/default/demo-ha run=/run/cistern/default-demo-ha
  for _ in $(seq 1 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
  for _ in $(seq 1 50); do "$bin" quorum -f examples/demo-ha.yaml 2>/dev/null | grep -q "voter.*voter" && break; sleep 0.2; done
  echo; echo "\$ cistern quorum -f examples/demo-ha.yaml"; "$bin" quorum -f examples/demo-ha.yaml
  leader=$(python3 -c "import json; print(json.load(open('$run/status.json'))['masters']['leader'])")
  echo; echo "\$ kill -9 \$(cat $run/master-$leader.pid)   # the leader"; kill -9 "$(cat "$run/master-$leader.pid")"
  echo; echo "\$ ls $mnt/labels | wc -l"; time ls "$mnt/labels" | wc -l
  sleep 2
  echo; echo "\$ cistern quorum -f examples/demo-ha.yaml   # a new leader, or the old one back first"; "$bin" quorum -f examples/demo-ha.yaml | head -1
  echo; echo "\$ cistern get runtime"; "$bin" get runtime
  exit 0
fi
"$bin" up -f examples/demo.yaml & up=$!
trap 'kill -TERM $up 2>/dev/null; wait $up' EXIT
mnt=/mnt/cistern/default/demo
for _ in $(seq 1 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
echo; echo "\$ ls -l $mnt"; ls -l "$mnt"
echo; echo "\$ cat $mnt/README.txt"; cat "$mnt/README.txt"
echo; echo "\$ cmp $mnt/shard-000.bin $data/shard-000.bin (cold, then warm)"
time cmp "$mnt/shard-000.bin" "$data/shard-000.bin"
time cmp "$mnt/shard-000.bin" "$data/shard-000.bin"
sleep 1.5
echo; echo "\$ cistern get dataset -o wide"; "$bin" get dataset -o wide
echo; echo "\$ cistern get runtime"; "$bin" get runtime
