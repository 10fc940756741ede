"""The workloads, each on a directory tree (a mount, or tmpfs) or on the S3 server itself.

Every function returns one number, higher is better unless the row says otherwise.
"""

import concurrent.futures as cf
import json
import os
import subprocess
import threading
import time

MIB = 1 << 20
CHUNK = 1 << 20


def read_range(path, start, end):
    fd = os.open(path, os.O_RDONLY)
    try:
        off, n = start, 0
        while off < end:
            got = os.pread(fd, min(CHUNK, end - off), off)
            if not got:
                break
            off += len(got)
            n += len(got)
        return n
    finally:
        os.close(fd)


def seq_read(path, streams):
    """MiB/s reading the whole file, split into `streams` parallel ranges."""
    size = os.path.getsize(path)
    part = -(-size // streams)
    t = time.perf_counter()
    with cf.ThreadPoolExecutor(streams) as pool:
        got = sum(pool.map(lambda i: read_range(path, i * part, min(size, (i + 1) * part)), range(streams)))
    dt = time.perf_counter() - t
    if got != size:
        raise RuntimeError(f"{path}: read {got} of {size} bytes")
    return size / MIB / dt


def fio_rand(path, bs, ios, seconds):
    """`ios` random reads with fio (psync, one job, at most `seconds`): IOPS and the bytes read.
    A fixed count, not a time: a timed run of a cold file ends up reading the page cache it
    filled itself."""
    out = subprocess.run(
        ["fio", "--name=r", f"--filename={path}", "--rw=randread", f"--bs={bs}", "--ioengine=psync",
         f"--number_ios={ios}", f"--runtime={seconds}", "--readonly", "--invalidate=0", "--output-format=json",
         f"--size={os.path.getsize(path)}"],
        capture_output=True, text=True, check=True)
    read = json.loads(out.stdout)["jobs"][0]["read"]
    return read["iops"], read["io_bytes"]


def epoch(paths, workers=4):
    """Files per second reading every small file whole (a training epoch, 4 loader workers)."""
    t = time.perf_counter()
    with cf.ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda p: read_range(p, 0, 1 << 40), paths))
    return len(paths) / (time.perf_counter() - t)


def ls_l(directory):
    """Entries per second of `ls -l` (readdir and a stat of each entry)."""
    t = time.perf_counter()
    out = subprocess.run(["ls", "-l", directory], capture_output=True, check=True)
    n = out.stdout.count(b"\n") - 1
    return n / (time.perf_counter() - t)


def stat_rate(paths):
    t = time.perf_counter()
    for p in paths:
        os.stat(p)
    return len(paths) / (time.perf_counter() - t)


def ttfb_ms(path):
    """Milliseconds from open to the first 4 KiB (lower is better)."""
    t = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    os.read(fd, 4096)
    os.close(fd)
    return (time.perf_counter() - t) * 1000


# ---- the UFS itself, over HTTP (anonymous reads on the bench bucket) ----

def get_range(s3, key, start=None, end=None, conn=None):
    c = conn or s3.connection()
    headers = {} if start is None else {"Range": f"bytes={start}-{end - 1}"}
    c.request("GET", f"/bench/{key}", headers=headers)
    r = c.getresponse()
    n = 0
    while True:
        b = r.read(CHUNK)
        if not b:
            break
        n += len(b)
    if r.status not in (200, 206):
        raise RuntimeError(f"GET {key}: HTTP {r.status}")
    return n


def ufs_seq(s3, key, size, streams):
    """MiB/s of `streams` parallel ranged GETs covering the object (1: one plain GET)."""
    part = -(-size // streams)
    t = time.perf_counter()
    if streams == 1:
        got = get_range(s3, key)
    else:
        with cf.ThreadPoolExecutor(streams) as pool:
            got = sum(pool.map(lambda i: get_range(s3, key, i * part, min(size, (i + 1) * part)), range(streams)))
    if got != size:
        raise RuntimeError(f"GET {key}: {got} of {size} bytes")
    return size / MIB / (time.perf_counter() - t)


def ufs_rand(s3, key, size, bs, count):
    """`count` ranged GETs of `bs` bytes at random offsets on one keep-alive connection: per second."""
    import random
    rnd = random.Random(7)
    conn = s3.connection()
    t = time.perf_counter()
    for _ in range(count):
        off = rnd.randrange(0, size - bs) // 4096 * 4096
        get_range(s3, key, off, off + bs, conn)
    return count / (time.perf_counter() - t)


def ufs_epoch(s3, keys, workers=4):
    local = threading.local()

    def one(k):
        if not hasattr(local, "c"):
            local.c = s3.connection()
        return get_range(s3, k, conn=local.c)

    t = time.perf_counter()
    with cf.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, keys))
    return len(keys) / (time.perf_counter() - t)


def ufs_list(s3, prefix):
    """Keys per second of a full ListObjectsV2 of `prefix` (1000 per page)."""
    import re
    import urllib.parse
    conn = s3.connection()
    token, n, t = None, 0, time.perf_counter()
    while True:
        q = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
        if token:
            q["continuation-token"] = token
        conn.request("GET", "/bench?" + urllib.parse.urlencode(q))
        body = conn.getresponse().read().decode()
        n += body.count("<Key>")
        m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
        if not m:
            break
        token = m.group(1)
    return n / (time.perf_counter() - t)


def ufs_head(s3, keys):
    conn = s3.connection()
    t = time.perf_counter()
    for k in keys:
        conn.request("HEAD", f"/bench/{k}")
        conn.getresponse().read()
    return len(keys) / (time.perf_counter() - t)


def ufs_ttfb_ms(s3, key):
    t = time.perf_counter()
    get_range(s3, key, 0, 4096)
    return (time.perf_counter() - t) * 1000
