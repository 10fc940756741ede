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
import far  # noqa: E402
import servers  # noqa: E402
import workloads as w  # noqa: E402

MIB = 1 << 20
# Another Cistern binary measured in the same run (`--baseline`): a change's before and after.
BASELINE = "cistern (baseline)"
# The same binary with the epoch prefetch off (`--only ...,cistern-noprefetch`).
NO_PREFETCH = "cistern (no prefetch)"
NOT_PEERS = {"cistern", BASELINE, NO_PREFETCH, "tmpfs (limit)", "S3 GETs"}
CPU_ROW = "CPU-s per GiB, seq read cold (lower better)"

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


def settled(s3, quiet=1.0, limit=30.0):
    """The server's reply bytes once they have stopped growing for `quiet` seconds."""
    import time
    deadline, last, since = time.time() + limit, s3.replies.payload_bytes(), time.time()
    while time.time() < deadline:
        time.sleep(0.25)
        now = s3.replies.payload_bytes()
        if now != last:
            last, since = now, time.time()
        elif time.time() - since >= quiet:
            break
    return last


LOAD_ROW = "load the dataset, 8 threads (MiB/s)"


def load_rate(m, nbytes):
    """MiB/s of the tool's own load command (`cistern load`, `juicefs warmup`) on the whole
    dataset, cold; a tool without one is left out of the row."""
    import time
    t = time.perf_counter()
    if not m.load(8):
        raise LookupError("no load command")
    return nbytes / MIB / (time.perf_counter() - t), nbytes


def epoch_row(readers):
    return f"small files epoch, {readers} readers (files/s)"


def measure_mount(m, s3, small, size, rows, results, extra):
    """Every workload on one contender, cold then warm. Beside each result, in `extra`: the
    bytes the S3 server sent per byte read (fetch amplification), the contender's CPU-seconds
    and the delay proxy's."""
    root = m.root()
    big = os.path.join(root, "large/big.bin")
    big_size = size["large"] * MIB
    small_paths = [os.path.join(root, r) for r in small]
    small_bytes = sum(size["small_sizes"])
    stat_paths = small_paths[: size["stats"]]
    # Each run: its value and the bytes it read.
    runs = [
        ("seq read, 1 stream (MiB/s)", lambda: (w.seq_read(big, 1), big_size)),
        ("seq read, 4 streams (MiB/s)", lambda: (w.seq_read(big, 4), big_size)),
        ("random 4 KiB reads (IOPS)", lambda: w.fio_rand(big, "4k", size["ios"], size["fio"])),
        ("random 256 KiB reads (IOPS)", lambda: w.fio_rand(big, "256k", size["ios"] // 4, size["fio"])),
        (epoch_row(size["readers"]), lambda: (w.epoch(small_paths, size["readers"]), small_bytes)),
        ("ls -l wide dir (entries/s)", lambda: (w.ls_l(os.path.join(root, "wide")), 0)),
        ("stat (ops/s)", lambda: (w.stat_rate(stat_paths), 0)),
        ("time to first byte (ms, lower better)", lambda: (w.ttfb_ms(big), 4096)),
        (LOAD_ROW, lambda: load_rate(m, big_size + small_bytes)),
    ]
    if m.proc is not None:
        # One untimed cold pass first. The first cold read after the references cost the
        # contender measured first 2.5 times the CPU (the FUSE daemon and the worker alike)
        # and half the throughput of a second one, whichever binary it was (order-swapped
        # runs); the cause is on the machine's side (not found yet), so every contender gets
        # the same pass before it is measured.
        m.cold()
        w.seq_read(big, 1)
    for name, run in runs:
        for phase in (["cold"] if name == LOAD_ROW else ["cold", "warm"]):
            if phase == "cold":
                m.cold()
            else:
                servers.drop_caches()
            pids = m.pids()
            each0 = {p: far.process_cpu([p]) for p in pids}
            cpu0, ufs0 = sum(each0.values()), s3.replies.payload_bytes()
            proxy0 = s3.proxy.cpu_seconds() if s3.proxy else 0
            try:
                value, read = run()
            except LookupError:
                continue  # the tool has nothing for this row
            except Exception as e:  # a contender failing a workload is a result, not a crash
                print(f"  {m.name}: {name} {phase}: failed: {e}", flush=True)
                value, read = None, 0
            # What a workload set going (readahead, the rest of a block, prefetch) is its cost
            # too: counted until the server has been quiet for a second.
            ufs = settled(s3) - ufs0
            cpu = far.process_cpu(pids) - cpu0
            proxy = (s3.proxy.cpu_seconds() - proxy0) if s3.proxy else None
            results.setdefault((name, phase), {})[m.name] = value
            cell = extra.setdefault((name, phase), {}).setdefault(m.name, {})
            cell.update(amp=(ufs / read) if read and value is not None else None, ufs=ufs, cpu=cpu, proxy=proxy)
            if (name, phase) not in rows:
                rows.append((name, phase))
            if name.startswith("seq read, 1 stream") and phase == "cold" and value is not None and pids:
                each = {far.process_name(p): far.process_cpu([p]) - c for p, c in each0.items()}
                print("    CPU-s by process: " + ", ".join(f"{n} {c:.2f}" for n, c in each.items() if c >= 0.01), flush=True)
                results.setdefault((CPU_ROW, "cold"), {})[m.name] = cpu / (big_size / (1 << 30))
                if (CPU_ROW, "cold") not in rows:
                    rows.append((CPU_ROW, "cold"))
            shown = "failed" if value is None else f"{value:.1f}"
            amp = "" if cell["amp"] is None else f"  amplification {cell['amp']:.2f}"
            print(f"  {m.name:14} {name:40} {phase}: {shown}  (CPU {cpu:.1f} s{amp})", flush=True)


def measure_ufs(s3, small, size, results):
    key, nbytes = "data/large/big.bin", size["large"] * MIB
    keys = [f"data/{r}" for r in small]
    ufs = {
        "seq read, 1 stream (MiB/s)": lambda: w.ufs_seq(s3, key, nbytes, 1),
        "seq read, 4 streams (MiB/s)": lambda: w.ufs_seq(s3, key, nbytes, 4),
        "random 4 KiB reads (IOPS)": lambda: w.ufs_rand(s3, key, nbytes, 4096, size["ios"]),
        "random 256 KiB reads (IOPS)": lambda: w.ufs_rand(s3, key, nbytes, 262144, size["ios"] // 4),
        epoch_row(size["readers"]): lambda: w.ufs_epoch(s3, keys, size["readers"]),
        "ls -l wide dir (entries/s)": lambda: w.ufs_list(s3, "data/wide/"),
        "stat (ops/s)": lambda: w.ufs_head(s3, keys[: size["stats"]]),
        "time to first byte (ms, lower better)": lambda: w.ufs_ttfb_ms(s3, key),
        LOAD_ROW: lambda: w.ufs_seq(s3, key, nbytes, 8),
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


def print_table(cells):
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    for i, c in enumerate(cells):
        print("| " + " | ".join(x.ljust(widths[j]) for j, x in enumerate(c)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (wd + 2) for wd in widths) + "|")


def report(rows, results, extra, columns, mounts, meta, out_dir):
    baseline = BASELINE in columns
    peer_columns = [c for c in columns if c not in NOT_PEERS]
    header = ["workload", "phase"] + columns + ["cistern / limit", "cistern / best peer"] + (["cistern / baseline"] if baseline else [])
    table = []
    for name, phase in rows:
        r = results[(name, phase)]
        lower = "lower better" in name
        peers = [r.get(p) for p in peer_columns if r.get(p) is not None]
        best = (min(peers) if lower else max(peers)) if peers else None
        line = [name, phase] + [r.get(c) for c in columns]
        line += [ratio(r.get("cistern"), r.get("tmpfs (limit)"), lower), ratio(r.get("cistern"), best, lower)]
        if baseline:
            line.append(ratio(r.get("cistern"), r.get(BASELINE), lower))
        table.append(line)
    fmt = lambda v: "-" if v is None else (f"{v:.2f}" if isinstance(v, float) and v < 10 else (f"{v:.0f}" if isinstance(v, float) else str(v)))
    cells = [header] + [[fmt(v) for v in line] for line in table]
    print()
    print(f"# {meta['date']} · {meta['machine']} · `{meta['command']}`")
    print_table(cells)
    # Fetch amplification: bytes the S3 server sent per byte the workload read (counted by
    # the kernel); "-" where a row reads no data.
    mounted = [c for c in columns if c not in ("tmpfs (limit)", "S3 GETs")]
    amp_header = ["workload", "phase"] + mounted
    amp = [[name, phase] + [extra.get((name, phase), {}).get(c, {}).get("amp") for c in mounted] for name, phase in rows if (name, phase) in extra]
    print("\nFetch amplification (bytes from the S3 server / bytes read):")
    print_table([amp_header] + [[fmt(v) for v in line] for line in amp])
    if meta.get("far"):
        proxy = {c: sum((e.get(c, {}).get("proxy") or 0) for e in extra.values()) for c in mounted}
        print("\nDelay proxy CPU-seconds while each contender ran (it shares the cores): "
              + ", ".join(f"{c} {v:.1f}" for c, v in proxy.items()))
    print("\nOptions: " + "; ".join(f"{m.name}: {m.options}" for m in mounts if m.options))
    os.makedirs(out_dir, exist_ok=True)
    stamp = meta["date"].replace(":", "").replace(" ", "T")
    with open(os.path.join(out_dir, f"compare-{meta['mode']}-{stamp}.json"), "w") as f:
        json.dump({"meta": meta, "columns": header, "rows": table, "amplification": {"columns": amp_header, "rows": amp},
                   "options": {m.name: m.options for m in mounts}}, f, indent=1)
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
    # A run stopped with SIGTERM still unmounts, stops the server and removes its namespace.
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller data, under 10 minutes on 2 cores")
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cistern", default=os.environ.get("CISTERN_BIN", "target/release/cistern"))
    ap.add_argument("--only", help="comma-separated contenders (cistern,juicefs,rclone,s3fs; also cistern-noprefetch)")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--baseline", help="another cistern binary (a change's before), measured in the same run")
    ap.add_argument("--far", action="store_true",
                    help="the S3 server in its own network namespace: 85 MiB/s per connection, 16 ms round trip")
    ap.add_argument("--peers", choices=["usual", "tuned", "both"], default="both",
                    help="peers with their usual options, their documented performance options, or both")
    ap.add_argument("--proxy", default=os.environ.get("CISTERN_DELAY_PROXY", "target/release/examples/delay_proxy"))
    ap.add_argument("--rclone-new", default=os.environ.get("CISTERN_BENCH_RCLONE", os.path.expanduser("~/.cache/cistern-bench/rclone/rclone")),
                    help="a newer rclone for the tuned run (parallel chunk streams)")
    args = ap.parse_args()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    size = dict(SIZES[mode], readers=8 if args.far else 4)
    if args.far:
        # A cold random read costs a round trip (about 50 a second): time for every read.
        size["fio"] = max(size["fio"], size["ios"] // 25)
    for tool in ["weed", "juicefs", "rclone", "s3fs", "fio"]:
        if shutil.which(tool) is None:
            sys.exit(f"`{tool}` is not on PATH: see the README's benchmark steps (bench/compare.sh installs them)")
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(), "mode": mode + ("-far" if args.far else ""),
            "command": "bench/compare.sh" + (" --quick" if args.quick else "") + (" --far" if args.far else ""), "sizes": size,
            "far": {"mib_per_connection": far.MIB_PER_CONNECTION, "round_trip_ms": 2 * far.ONE_WAY_MS} if args.far else None}
    work = tempfile.mkdtemp(prefix="cistern-compare-")
    st = os.statvfs(work)
    if st.f_bavail < 0.12 * st.f_blocks:
        # JuiceFS stops caching under 10 % free (its --free-space-ratio), and said so only in its
        # log: a run on a full disk measured it uncached.
        sys.exit(f"{work}: less than 12 % of its file system is free; the peers' disk caches need room")
    shm = tempfile.mkdtemp(prefix="cistern-compare-", dir="/dev/shm")
    link = far.FarLink() if args.far else None
    s3, mounts = None, []
    try:
        s3 = servers.S3Server(work, link, os.path.abspath(args.proxy))
        small = generate(shm, s3, size)
        size["small_sizes"] = [os.path.getsize(f"{shm}/{r}") for r in small]
        data_mib = size["large"] + sum(os.path.getsize(f"{shm}/{r}") for r in small) // MIB
        quota = data_mib * 2 + 256
        usual, tuned = args.peers in ("usual", "both"), args.peers in ("tuned", "both")
        wanted = set((args.only or "cistern,juicefs,rclone,s3fs").split(","))
        if args.baseline:
            wanted.add(BASELINE)
        candidates = [
            ("cistern", True, lambda: servers.Cistern(work, s3, "data", os.path.abspath(args.cistern), quota)),
            (BASELINE, True, lambda: servers.Cistern(work, s3, "data", os.path.abspath(args.baseline), quota, BASELINE)),
            ("cistern-noprefetch", True, lambda: servers.Cistern(work, s3, "data", os.path.abspath(args.cistern), quota, NO_PREFETCH, prefetch=False)),
            ("juicefs", usual, lambda: servers.JuiceFs(work, s3, "data", quota)),
            ("juicefs", tuned, lambda: servers.JuiceFs(work, s3, "data", quota, tuned=True)),
            ("rclone", usual, lambda: servers.Rclone(work, s3, "data")),
            ("rclone", tuned and os.path.exists(args.rclone_new), lambda: servers.Rclone(work, s3, "data", args.rclone_new, tuned=True)),
            ("s3fs", usual, lambda: servers.S3fs(work, s3, "data")),
            ("s3fs", tuned, lambda: servers.S3fs(work, s3, "data", tuned=True)),
        ]
        if tuned and "rclone" in wanted and not os.path.exists(args.rclone_new):
            print(f"no newer rclone at {args.rclone_new}: the tuned rclone is left out", flush=True)
        results, rows, extra, columns = {}, [], {}, ["tmpfs (limit)", "S3 GETs"]
        print("measuring: the limit (tmpfs) and the S3 server itself", flush=True)
        measure_mount(servers.Tmpfs(shm), s3, small, size, rows, results, extra)
        measure_ufs(s3, small, size, results)
        for name, on, make in candidates:
            if name not in wanted or not on:
                continue
            m = make()
            print(f"measuring: {m.name}", flush=True)
            mounts.append(m)
            m.start()
            if name == "juicefs" and not os.path.exists(os.path.join(m.mnt, "data", "large", "big.bin")):
                # JuiceFS keeps its own block format: the same data, written through it once.
                print("  copying the dataset into JuiceFS (not timed) ...", flush=True)
                subprocess.run(["cp", "-r", shm + "/.", os.path.join(m.mnt, "data")], check=True)
            measure_mount(m, s3, small, size, rows, results, extra)
            m.stop()
            columns.append(m.name)
        report(rows, results, extra, columns, mounts, meta, args.out)
    finally:
        for m in mounts:
            m.stop()
        if s3:
            s3.stop()
        if link:
            link.down()
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree("/dev/shm/cistern-bench-cache", ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
