"""Far mode (`--far`): the S3 server in a network namespace of its own, as a far object store.

- Every connection from the server's side is limited to a rate, as object stores limit one
  connection (an HTB class per hash bucket of the client's port: the cache bench's rule,
  tests/support/far.rs, at its 85 MiB/s).
- Every byte is held for a fixed time each way by a proxy in the server's namespace
  (crates/cli/examples/delay_proxy.rs: timestamp and release, so it adds latency and never
  caps throughput; this kernel has no netem). Its CPU use is printed: it shares the cores.

Also here: byte counters on the server's replies (nftables, kept by the kernel), which give
every row its fetch amplification in both modes.
"""

import os
import subprocess
import tempfile

MIB_PER_CONNECTION = 85
ONE_WAY_MS = 8  # 16 ms round trip


def run(*args):
    out = subprocess.run(list(args), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` failed: {out.stderr.strip()}")
    return out.stdout


class FarLink:
    """A namespace for the server, reached over a veth pair at `server_ip`."""

    def __init__(self, mib_per_connection=MIB_PER_CONNECTION):
        pid = os.getpid()
        self.ns = f"cistern-cmp-{pid}"
        subnet = f"10.251.{pid % 250}"
        self.near_ip, self.server_ip = f"{subnet}.1", f"{subnet}.2"
        self.near, far = f"ccmp{pid % 100000}n", f"ccmp{pid % 100000}f"
        run("ip", "netns", "add", self.ns)
        try:
            run("ip", "link", "add", self.near, "type", "veth", "peer", "name", far)
            run("ip", "link", "set", far, "netns", self.ns)
            run("ip", "addr", "add", f"{self.near_ip}/24", "dev", self.near)
            run("ip", "link", "set", self.near, "up")
            self.exec("ip", "addr", "add", f"{self.server_ip}/24", "dev", far)
            self.exec("ip", "link", "set", far, "up")
            self.exec("ip", "link", "set", "lo", "up")
            self.limit_each_connection(far, mib_per_connection)
        except Exception:
            self.down()
            raise

    def exec(self, *args):
        return run("ip", "netns", "exec", self.ns, *args)

    def prefix(self):
        """What runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.ns]

    def limit_each_connection(self, dev, mib):
        rate = f"{mib * 1024 * 1024 * 8 // 1000}kbit"
        lines = [f"qdisc add dev {dev} root handle 1: htb default 1",
                 f"class add dev {dev} parent 1: classid 1:1 htb rate 100gbit quantum 60000"]
        for i in range(256):
            lines.append(f"class add dev {dev} parent 1: classid 1:{i + 256:x} htb rate {rate} ceil {rate} burst 256k quantum 60000")
        lines.append(f"filter add dev {dev} parent 1: prio 1 handle 2: protocol ip u32 divisor 256")
        # The 32-bit word at byte 20 of a TCP/IP packet holds both ports; its low byte is the
        # low byte of the client's port.
        lines.append(f"filter add dev {dev} parent 1: prio 1 protocol ip u32 ht 800:: match ip protocol 6 0xff hashkey mask 0x000000ff at 20 link 2:")
        for i in range(256):
            lines.append(f"filter add dev {dev} parent 1: prio 1 protocol ip u32 ht 2:{i:x}: match u32 0 0 flowid 1:{i + 256:x}")
        with tempfile.NamedTemporaryFile("w", suffix=".tc", delete=False) as f:
            f.write("\n".join(lines) + "\n")
        try:
            self.exec("tc", "-batch", f.name)
        finally:
            os.unlink(f.name)

    def down(self):
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.near], capture_output=True)


class DelayProxy:
    """The delay proxy in the server's namespace, in front of the server's port."""

    def __init__(self, binary, link, upstream_port, log):
        self.proc = subprocess.Popen(
            link.prefix() + [binary, f"{link.server_ip}:0", f"127.0.0.1:{upstream_port}", str(ONE_WAY_MS)],
            stdout=subprocess.PIPE, stderr=log, text=True)
        line = self.proc.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"the delay proxy did not start (exit {self.proc.poll()})")
        self.port = int(line.rsplit(":", 1)[1])

    def cpu_seconds(self):
        return process_cpu([self.proc.pid])

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class ReplyCounter:
    """Bytes the S3 server (or the proxy before it) sends, counted by the kernel: an nftables
    rule on replies from `port`, in namespace `ns` (None: this one)."""

    def __init__(self, port, ns=None):
        self.prefix = ["ip", "netns", "exec", ns] if ns else []
        self.table = f"cistern_cmp_{os.getpid()}"
        run(*self.prefix, "nft", "add", "table", "inet", self.table)
        run(*self.prefix, "nft", "add", "chain", "inet", self.table, "out", "{ type filter hook output priority 0; }")
        run(*self.prefix, "nft", "add", "rule", "inet", self.table, "out", "tcp", "sport", str(port), "counter")

    def payload_bytes(self):
        """Bytes sent so far, less an estimate of the TCP/IP headers (52 bytes a packet)."""
        import json
        out = json.loads(run(*self.prefix, "nft", "-j", "list", "chain", "inet", self.table, "out"))
        for item in out["nftables"]:
            rule = item.get("rule")
            if rule:
                for e in rule["expr"]:
                    if "counter" in e:
                        return max(0, e["counter"]["bytes"] - 52 * e["counter"]["packets"])
        return 0

    def stop(self):
        subprocess.run(self.prefix + ["nft", "delete", "table", "inet", self.table], capture_output=True)


def descendants(pid):
    """`pid` and every process below it."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def process_cpu(pids):
    """User + system CPU-seconds of `pids` so far (live processes; from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / tick


def process_name(pid):
    """A process's command and first argument (`cistern worker`), for figures per process."""
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            argv = f.read().split("\0")
        return " ".join([os.path.basename(argv[0])] + [a for a in argv[1:2] if not a.startswith("-")]) + f" ({pid})"
    except OSError:
        return str(pid)
