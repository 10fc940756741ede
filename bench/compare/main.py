"""Cistern against the tools a user would install instead, in one run on one machine.

Prepares a SeaweedFS S3 server on 127.0.0.1 with generated data (one large file, many small
files, one wide directory), mounts every contender on the same bucket, runs each workload cold
(the tool stopped, its cache wiped, the kernel's caches dropped, the tool mounted again) and warm
(the same again with only the kernel's caches dropped), and prints one table with Cistern's ratio
to the limit (tmpfs) and to the best peer per row. JSON and CSV copies go to bench/results/.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import concurrent.futures as cf

sys.path.insert(0, os.path.dirname(__file__))
import servers  # noqa: E402
import workloads as w  # noqa: E402

MIB = 1 << 20
PEERS = ["juicefs", "rclone", "s3fs"]
# Another Cistern binary measured in the same run (`--baseline`): a change's before and after.
BASELINE = "cistern (baseline)"

SIZES = {
    # large MiB, small files, wide entries, random reads (at most `fio` seconds), stat sample
    "quick": dict(large=1024, small=2000, wide=10000, ios=2000, fio=20, stats=1000),
    "full": dict(large=2048, small=10000, wide=100000, ios=5000, fio=30, stats=5000),
    # A smoke run of the harness itself (seconds), not a measurement.
    "smoke": dict(large=64, small=100, wide=500, ios=200, fio=2, stats=100),
}


def generate(shm, s3, size):
    """The dataset in tmpfs (the limit) and in the bucket under `data/`."""
    rnd = random.Random(42)
    os.makedirs(f"{shm}/large", exist_ok=True)
    big = os.urandom(size["large"] * MIB)
    with open(f"{shm}/large/big.bin", "wb") as f:
        f.write(big)
    print(f"uploading the large file ({size['large']} MiB) ...", flush=True)
    s3.put("data/large/big.bin", big)
    del big
    small = []
    for i in range(size["small"]):
        rel = f"small/d{i % 20:02}/f{i:05}.bin"
        small.append((rel, os.urandom(rnd.randint(4, 256) * 1024)))
    wide = [(f"wide/e{i:06}", b"") for i in range(size["wide"])]
    for rel, data in small + wide:
        os.makedirs(os.path.dirname(f"{shm}/{rel}"), exist_ok=True)
        with open(f"{shm}/{rel}", "wb") as f:
            f.write(data)
    print(f"uploading {len(small)} small files and {len(wide)} directory entries ...", flush=True)
    items = small + wide
    chunks = [items[i::8] for i in range(8)]

    def upload(chunk):
        c = s3.connection()
        for rel, data in chunk:
            s3.put(f"data/{rel}", data, c)

    with cf.ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, chunks))
    return [r for r, _ in small]


def measure_mount(m, small, size, rows, results):
    """Every workload on one contender, cold then warm."""
    root = m.root()
    big = os.path.join(root, "large/big.bin")
    small_paths = [os.path.join(root, r) for r in small]
    stat_paths = small_paths[: size["stats"]]
    runs = [
        ("seq read, 1 stream (MiB/s)", lambda: w.seq_read(big, 1)),
        ("seq read, 4 streams (MiB/s)", lambda: w.seq_read(big, 4)),
        ("random 4 KiB reads (IOPS)", lambda: w.fio_rand(big, "4k", size["ios"], size["fio"])),
        ("random 256 KiB reads (IOPS)", lambda: w.fio_rand(big, "256k", size["ios"] // 4, size["fio"])),
        ("small files epoch (files/s)", lambda: w.epoch(small_paths)),
        ("ls -l wide dir (entries/s)", lambda: w.ls_l(os.path.join(root, "wide"))),
        ("stat (ops/s)", lambda: w.stat_rate(stat_paths)),
        ("time to first byte (ms, lower better)", lambda: w.ttfb_ms(big)),
    ]
    for name, run in runs:
        for phase in ["cold", "warm"]:
            if phase == "cold":
                m.cold()
            else:
                servers.drop_caches()
            try:
                value = run()
            except Exception as e:  # a contender failing a workload is a result, not a crash
                print(f"  {m.name}: {name} {phase}: failed: {e}", flush=True)
                value = None
            results.setdefault((name, phase), {})[m.name] = value
            if (name, phase) not in rows:
                rows.append((name, phase))
            shown = "failed" if value is None else f"{value:.1f}"
            print(f"  {m.name:14} {name:40} {phase}: {shown}", flush=True)


def measure_ufs(s3, small, size, results):
    key, nbytes = "data/large/big.bin", size["large"] * MIB
    keys = [f"data/{r}" for r in small]
    ufs = {
        "seq read, 1 stream (MiB/s)": lambda: w.ufs_seq(s3, key, nbytes, 1),
        "seq read, 4 streams (MiB/s)": lambda: w.ufs_seq(s3, key, nbytes, 4),
        "random 4 KiB reads (IOPS)": lambda: w.ufs_rand(s3, key, nbytes, 4096, size["ios"]),
        "random 256 KiB reads (IOPS)": lambda: w.ufs_rand(s3, key, nbytes, 262144, size["ios"] // 4),
        "small files epoch (files/s)": lambda: w.ufs_epoch(s3, keys),
        "ls -l wide dir (entries/s)": lambda: w.ufs_list(s3, "data/wide/"),
        "stat (ops/s)": lambda: w.ufs_head(s3, keys[: size["stats"]]),
        "time to first byte (ms, lower better)": lambda: w.ufs_ttfb_ms(s3, key),
    }
    for name, run in ufs.items():
        value = run()
        for phase in ["cold", "warm"]:
            results.setdefault((name, phase), {})["S3 GETs"] = value
        print(f"  {'S3 GETs':14} {name:40}: {value:.1f}", flush=True)


def ratio(a, b, lower_better):
    if a is None or not b:
        return None
    return b / a if lower_better else a / b


def report(rows, results, columns, meta, out_dir):
    baseline = BASELINE in columns
    header = ["workload", "phase"] + columns + ["cistern / limit", "cistern / best peer"] + (["cistern / baseline"] if baseline else [])
    table = []
    for name, phase in rows:
        r = results[(name, phase)]
        lower = "lower better" in name
        peers = [r.get(p) for p in PEERS if r.get(p) is not None]
        best = (min(peers) if lower else max(peers)) if peers else None
        line = [name, phase] + [r.get(c) for c in columns]
        line += [ratio(r.get("cistern"), r.get("tmpfs (limit)"), lower), ratio(r.get("cistern"), best, lower)]
        if baseline:
            line.append(ratio(r.get("cistern"), r.get(BASELINE), lower))
        table.append(line)
    fmt = lambda v: "-" if v is None else (f"{v:.2f}" if isinstance(v, float) and v < 10 else (f"{v:.0f}" if isinstance(v, float) else str(v)))
    cells = [header] + [[fmt(v) for v in line] for line in table]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    print()
    print(f"# {meta['date']} · {meta['machine']} · `{meta['command']}`")
    for i, c in enumerate(cells):
        print("| " + " | ".join(x.ljust(widths[j]) for j, x in enumerate(c)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (wd + 2) for wd in widths) + "|")
    os.makedirs(out_dir, exist_ok=True)
    stamp = meta["date"].replace(":", "").replace(" ", "T")
    with open(os.path.join(out_dir, f"compare-{meta['mode']}-{stamp}.json"), "w") as f:
        json.dump({"meta": meta, "columns": header, "rows": table}, f, indent=1)
    with open(os.path.join(out_dir, f"compare-{meta['mode']}-{stamp}.csv"), "w", newline="") as f:
        csv.writer(f).writerows([header] + table)
    print(f"\nJSON and CSV in {out_dir}/")


def machine():
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // (1 << 20)
    return f"{os.cpu_count()} cores, {mem} GiB, Linux {platform.release()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller data, under 10 minutes on 2 cores")
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cistern", default=os.environ.get("CISTERN_BIN", "target/release/cistern"))
    ap.add_argument("--only", help="comma-separated contenders (cistern,juicefs,rclone,s3fs)")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--baseline", help="another cistern binary (a change's before), measured in the same run")
    args = ap.parse_args()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    size = SIZES[mode]
    for tool in ["weed", "juicefs", "rclone", "s3fs", "fio"]:
        if shutil.which(tool) is None:
            sys.exit(f"`{tool}` is not on PATH: see the README's benchmark steps (bench/compare.sh installs them)")
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(), "mode": mode,
            "command": "bench/compare.sh" + (" --quick" if args.quick else ""), "sizes": size}
    work = tempfile.mkdtemp(prefix="cistern-compare-")
    shm = tempfile.mkdtemp(prefix="cistern-compare-", dir="/dev/shm")
    s3 = servers.S3Server(work)
    mounts = []
    try:
        small = generate(shm, s3, size)
        data_mib = size["large"] + sum(os.path.getsize(f"{shm}/{r}") for r in small) // MIB
        quota = data_mib * 2 + 256
        wanted = set((args.only or "cistern,juicefs,rclone,s3fs").split(","))
        if args.baseline:
            wanted.add(BASELINE)
        candidates = [
            ("cistern", lambda: servers.Cistern(work, s3, "data", os.path.abspath(args.cistern), quota)),
            (BASELINE, lambda: servers.Cistern(work, s3, "data", os.path.abspath(args.baseline), quota, BASELINE)),
            ("juicefs", lambda: servers.JuiceFs(work, s3, "data", quota)),
            ("rclone", lambda: servers.Rclone(work, s3, "data")),
            ("s3fs", lambda: servers.S3fs(work, s3, "data")),
        ]
        results, rows = {}, []
        print("measuring: the limit (tmpfs) and the S3 server itself", flush=True)
        measure_mount(servers.Tmpfs(shm), small, size, rows, results)
        measure_ufs(s3, small, size, results)
        for name, make in candidates:
            if name not in wanted:
                continue
            print(f"measuring: {name}", flush=True)
            m = make()
            mounts.append(m)
            m.start()
            if name == "juicefs":
                # JuiceFS keeps its own block format: the same data, written through it once.
                print("  copying the dataset into JuiceFS (not timed) ...", flush=True)
                subprocess.run(["cp", "-r", shm + "/.", os.path.join(m.mnt, "data")], check=True)
            measure_mount(m, small, size, rows, results)
            m.stop()
        columns = ["tmpfs (limit)", "S3 GETs"] + [n for n, _ in candidates if n in wanted]
        report(rows, results, columns, meta, args.out)
    finally:
        for m in mounts:
            m.stop()
        s3.stop()
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree("/dev/shm/cistern-bench-cache", ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
