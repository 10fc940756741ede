#!/usr/bin/env python3
"""One master against three (Raft), in one run: metadata operations per second and failover.

The UFS is a local directory tree, so what is measured is the masters' own cost (a listing is
one Raft commit with three masters, one local transaction with one), not an object store's.
For each setup, `cistern up` serves the tree and:

- listing: with a 1 s sync interval, every directory of the tree listed again once stale, by
  one walker (each listing is one local transaction with one master; with three, one commit
  that a majority has written, and a forward when the walker's master follows);
- first walk: every directory and entry through the mount for the first time (the master's
  background count of the UFS has listed the tree already: this is the masters' reads, the
  FUSE client's and the kernel's);
- warm stat: the same entries stat'ed again once the kernel's caches are dropped.

With three masters and the 1 s sync interval, then, `--kills` rounds SIGKILL the leader (which
`up` restarts at once, so it may lead again before the others stand) and as many SIGSTOP it
until another is elected (a hung node: every round an election), and time, from the loss:

- a known name in a directory whose listing is stale: answered once a leader re-lists it;
- a name new in the UFS, which needs a new listing too.

Usage: bench/masters.sh [--dirs N] [--files N] [--kills N]; needs root (FUSE, drop_caches).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

CISTERN = os.environ.get("CISTERN_BIN", "target/release/cistern")


def yaml(name, ufs, meta, ssd, masters, interval):
    master = f"  master:\n    replicas: {masters}\n    properties:\n      namespace.meta-dir: {meta}\n"
    return f"""apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata:
  name: {name}
spec:
  mounts:
    - mountPoint: local://{ufs}
      name: data
      path: /
---
apiVersion: data.fluid.io/v1alpha1
kind: JindoRuntime
metadata:
  name: {name}
spec:
  replicas: 1
{master}  properties:
    alluxio.user.file.metadata.sync.interval: {interval}
  tieredstore:
    levels:
      - mediumtype: SSD
        path: {ssd}
        quota: 1Gi
"""


def make_tree(root, dirs, files):
    for d in range(dirs):
        p = os.path.join(root, f"d{d:04}")
        os.makedirs(p)
        for f in range(files):
            with open(os.path.join(p, f"f{f:04}.txt"), "w") as fh:
                fh.write(f"{d}/{f}\n")


def mounted(path):
    with open("/proc/mounts") as fh:
        return any(line.split()[1] == path for line in fh)


class Up:
    def __init__(self, work, name, masters, ufs, interval):
        self.work, self.name = work, name
        self.mnt = os.path.join(work, "mnt", "default", name)
        self.run_dir = os.path.join(work, "run", f"default-{name}")
        meta = os.path.join(work, f"meta-{name}")
        path = os.path.join(work, f"{name}.yaml")
        with open(path, "w") as fh:
            fh.write(yaml(name, ufs, meta, os.path.join(work, f"ssd-{name}"), masters, interval))
        self.log = open(os.path.join(work, f"up-{name}.log"), "w")
        self.proc = subprocess.Popen(
            [CISTERN, "up", "-f", path, "--mount-root", os.path.join(work, "mnt"), "--run-root", os.path.join(work, "run"), "--web-addr", "127.0.0.1:0"],
            stdout=self.log, stderr=self.log, env=dict(os.environ, CISTERN_LOG="warn"),
        )
        deadline = time.time() + 60
        while not mounted(self.mnt):
            if time.time() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"cistern up did not mount {self.mnt}; see {self.log.name}")
            time.sleep(0.05)

    def counted(self):
        """Waits for the master's background count of the UFS (which lists every directory)."""
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with open(os.path.join(self.run_dir, "status.json")) as fh:
                    n = json.load(fh)["dataset"]["status"].get("fileNum")
                if n not in (None, "", "[Calculating]"):
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise SystemExit("the UFS count never finished")

    def leader(self):
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with open(os.path.join(self.run_dir, "status.json")) as fh:
                    leader = json.load(fh).get("masters", {}).get("leader")
                if leader is not None:
                    return leader
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise SystemExit("no leader in status.json")

    def pid(self, component):
        with open(os.path.join(self.run_dir, f"{component}.pid")) as fh:
            return int(fh.read().strip())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def drop_caches():
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write("2\n")


def walk(root):
    """Lists every directory and stats every entry; returns (directories, entries, seconds)."""
    started = time.perf_counter()
    dirs = entries = 0
    stack = [root]
    while stack:
        d = stack.pop()
        dirs += 1
        with os.scandir(d) as it:
            for e in it:
                os.stat(e.path)
                entries += 1
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
    return dirs, entries, time.perf_counter() - started


def measure(work, ufs, masters, kills):
    out = {"masters": masters}
    # Listings trusted for 60 s: the walks measure listing and stat, not re-listing.
    up = Up(work, f"m{masters}", masters, ufs, "60s")
    try:
        up.counted()
        d, e, s = walk(up.mnt)
        out["first_dirs_per_s"], out["first_entries_per_s"] = d / s, e / s
        drop_caches()
        d, e, s = walk(up.mnt)
        out["warm_entries_per_s"] = e / s
    finally:
        up.stop()
    # Listings trusted for 1 s: every directory is listed again once stale.
    up = Up(work, f"m{masters}s", masters, ufs, "1s")
    try:
        walk(up.mnt)
        time.sleep(1.5)
        drop_caches()
        d, e, s = walk(up.mnt)
        out["relist_dirs_per_s"] = d / s
        if masters > 1:
            # SIGKILL: `up` restarts the leader at once. SIGSTOP: the leader is frozen (a hung
            # node) until another is elected, so every round is a real election.
            for how in ("kill", "freeze"):
                reads, writes = [], []
                for k in range(kills):
                    time.sleep(1.5)
                    new_dir = os.path.join(ufs, f"new{masters}-{how}-{k}")
                    os.makedirs(new_dir)
                    with open(os.path.join(new_dir, "x.txt"), "w") as fh:
                        fh.write("new\n")
                    time.sleep(1.2)  # the root's listing (and d0000's) goes stale
                    leader = up.leader()
                    pid = up.pid(f"master-{leader}")
                    os.kill(pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
                    hit = time.perf_counter()
                    # A known name in a stale directory: answered once a leader re-lists it.
                    os.stat(os.path.join(up.mnt, "d0000", "f0000.txt"))
                    reads.append(time.perf_counter() - hit)
                    while True:
                        try:
                            os.stat(os.path.join(new_dir.replace(ufs, up.mnt), "x.txt"))
                            break
                        except FileNotFoundError:
                            if time.perf_counter() - hit > 30:
                                raise SystemExit("the new name never appeared after the leader's loss")
                            time.sleep(0.02)
                    writes.append(time.perf_counter() - hit)
                    if how == "freeze":
                        os.kill(pid, signal.SIGCONT)
                    time.sleep(2.0)  # the old leader is back (restarted, or thawed) before the next round
                out[f"{how}_read_stall_ms"] = [round(x * 1000, 1) for x in reads]
                out[f"{how}_write_stall_ms"] = [round(x * 1000, 1) for x in writes]
    finally:
        up.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dirs", type=int, default=400)
    ap.add_argument("--files", type=int, default=50)
    ap.add_argument("--kills", type=int, default=5)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="cistern-masters-bench-")
    ufs = os.path.join(work, "ufs")
    make_tree(ufs, args.dirs, args.files)
    print(f"tree: {args.dirs} directories x {args.files} files (local UFS); {args.kills} leader kills", flush=True)
    try:
        one = measure(work, ufs, 1, 0)
        three = measure(work, ufs, 3, args.kills)
    finally:
        for m in ("m1", "m3", "m1s", "m3s"):
            subprocess.run(["umount", "-l", os.path.join(work, "mnt", "default", m)], stderr=subprocess.DEVNULL)
    rows = [
        ("listing: stale directories listed per s", "relist_dirs_per_s"),
        ("first walk: directories per s", "first_dirs_per_s"),
        ("first walk: entries per s", "first_entries_per_s"),
        ("warm stat: entries per s", "warm_entries_per_s"),
    ]
    print(f"\n{'metadata operations':<40} {'1 master':>10} {'3 masters':>10} {'3 / 1':>7}")
    for label, key in rows:
        print(f"{label:<40} {one[key]:>10.0f} {three[key]:>10.0f} {three[key] / one[key]:>7.2f}")
    for how, what in (("kill", "SIGKILLed (restarted at once by `up`)"), ("freeze", "frozen by SIGSTOP until another leads")):
        r, w = three[f"{how}_read_stall_ms"], three[f"{how}_write_stall_ms"]
        print(f"\nfailover, the leader {what}, {len(w)} times (1 s sync interval), from the loss:")
        print(f"  a known name in a stale directory: median {statistics.median(r):7.1f} ms, max {max(r):7.1f} ms")
        print(f"  a name new in the UFS:             median {statistics.median(w):7.1f} ms, max {max(w):7.1f} ms (target 3000)")
    os.makedirs("bench/results", exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H%M")
    path = f"bench/results/masters-{stamp}.json"
    with open(path, "w") as fh:
        json.dump({"dirs": args.dirs, "files": args.files, "one": one, "three": three}, fh, indent=1)
    print(f"\nresults: {path}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
