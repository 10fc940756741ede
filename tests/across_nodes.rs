//! One cache across several hosts, each a network namespace with its own address (see
//! `support::hosts`): the S3 server and the master on `srv`, a worker and a FUSE client on
//! each of `n1`..`n3`, and a FUSE client alone on `n4` (a node with no worker). Every component
//! is started by hand as on its own machine (`cistern master|worker|fuse` with `--listen` /
//! `--master`, its own `NODE_NAME` and run directory), talking mutual TLS over TCP.
//!
//! What must hold: four clients reading the same data cold cost the object store about one
//! egress; every byte is right; a worker SIGKILLed, or whose cable is cut, under readers
//! causes no read error and a bounded stall (printed); the figures tell local from remote hits.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::hosts::{Hosts, Proc};
use support::s3::{self, ACCESS_KEY, BUCKET, SECRET_KEY};
use support::*;

const MASTER_PORT: u16 = 7000;
const WEB_PORT: u16 = 7001;
const WORKER_PORT: u16 = 7100;

/// The Dataset on the bucket, with `runtime` (an AlluxioRuntime spec's lines after `spec:`
/// other than its tieredstore and master).
fn yaml(endpoint: &str, meta: &Path, ssd: &Path, runtime: &str) -> String {
    format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: s3-keys
stringData:
  id: {ACCESS_KEY}
  secret: {SECRET_KEY}
---
apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata:
  name: nodes
spec:
  mounts:
    - mountPoint: s3://{BUCKET}/nodes
      name: bucket
      path: /
      options:
        fs.s3.endpoint: {endpoint}
        fs.s3.region: us-east-1
      encryptOptions:
        - name: fs.s3.accessKeyId
          valueFrom:
            secretKeyRef: {{name: s3-keys, key: id}}
        - name: fs.s3.accessKeySecret
          valueFrom:
            secretKeyRef: {{name: s3-keys, key: secret}}
---
apiVersion: data.fluid.io/v1alpha1
kind: AlluxioRuntime
metadata:
  name: nodes
spec:
{runtime}  master:
    properties:
      namespace.meta-dir: {meta}
  tieredstore:
    levels:
      - mediumtype: SSD
        path: {ssd}
        quota: 1Gi
",
        meta = meta.display(),
        ssd = ssd.display()
    )
}

/// A FUSE client: SIGTERM (an orderly unmount) when dropped, then SIGKILL and a lazy unmount.
struct Fuse {
    proc: Proc,
    mountpoint: PathBuf,
}

impl Drop for Fuse {
    fn drop(&mut self) {
        unsafe { libc::kill(self.proc.pid() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.proc.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.proc.kill9();
        if is_mounted(&self.mountpoint) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.mountpoint).status();
        }
    }
}

/// One set of hosts at a time: each runs five components and an S3 server on two cores.
static SERIAL: Mutex<()> = Mutex::new(());

struct Nodes {
    // Dropped first to last: clients, workers, master, then the hosts.
    fuse: BTreeMap<String, Fuse>,
    workers: BTreeMap<String, Proc>,
    _master: Proc,
    hosts: Hosts,
    s: Scratch,
    _serial: std::sync::MutexGuard<'static, ()>,
    web: String,
    master_addr: String,
    file: PathBuf,
    endpoint: String,
    files: BTreeMap<String, Vec<u8>>,
}

/// 3 workers, 4 clients, the S3 server and the master, each on its host; `files` in the bucket;
/// `runtime`: see [`yaml`].
fn start(files: BTreeMap<String, Vec<u8>>, runtime: &str) -> Nodes {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new();
    let hosts = Hosts::up(&["srv", "n1", "n2", "n3", "n4"]).expect("network namespaces (needs root and iproute2)");
    let srv = hosts.get("srv");
    let store = s3::server_in(&srv.ns, &srv.ip);
    s3::upload_to(&store, "nodes", &files);
    let file = s.write("nodes.yaml", &yaml(&store.endpoint, &s.path("meta"), &s.path("ssd"), runtime));
    let bin = Path::new(cistern_bin());
    let creds = s.path("run/srv/credentials");
    let master_addr = format!("{}:{MASTER_PORT}", srv.ip);
    let mut master = srv.command(bin);
    master.args(["master", "--listen", &master_addr, "--web-addr", &format!("{}:{WEB_PORT}", srv.ip), "-f"]).arg(&file);
    master.arg("--run-dir").arg(s.path("run/srv")).env("CISTERN_LOG", "info").stdout(Stdio::null()).stderr(std::fs::File::create(s.path("master.log")).unwrap());
    let master = Proc(master.spawn().unwrap());
    eventually(30, "the master's credentials", || creds.join("ca.pem").exists().then_some(()));
    let web = format!("http://{}:{WEB_PORT}", srv.ip);
    let mut nodes = Nodes { fuse: BTreeMap::new(), workers: BTreeMap::new(), _master: master, hosts, s, _serial: serial, web, master_addr: master_addr.clone(), file: file.clone(), endpoint: store.endpoint.clone(), files };
    for node in ["n1", "n2", "n3"] {
        nodes.start_worker(node);
    }
    eventually(60, "three workers ready", || (nodes.status()["runtime"]["status"]["workerNumberReady"].as_u64() == Some(3)).then_some(()));
    for node in ["n1", "n2", "n3", "n4"] {
        let h = nodes.hosts.get(node);
        let mountpoint = nodes.s.path(&format!("mnt/{node}"));
        let mut f = h.command(bin);
        f.args(["fuse", "--master", &master_addr, "-f"]).arg(&file).arg("--mountpoint").arg(&mountpoint);
        f.arg("--run-dir").arg(nodes.s.path(&format!("run/{node}"))).arg("--credentials").arg(&creds);
        f.env("CISTERN_LOG", "info").stdout(Stdio::null()).stderr(std::fs::File::create(nodes.s.path(&format!("fuse-{node}.log"))).unwrap());
        let proc = Proc(f.spawn().unwrap());
        nodes.fuse.insert(node.to_string(), Fuse { proc, mountpoint });
    }
    for (node, f) in &nodes.fuse {
        eventually(60, &format!("the mount on {node}"), || is_mounted(&f.mountpoint).then_some(()));
    }
    nodes
}

impl Nodes {
    /// The worker of `node` (index 0, 1, 2, 3 for n1, n2, n3, n4), over the cache it had if any.
    fn start_worker(&mut self, node: &str) {
        let index = ["n1", "n2", "n3", "n4"].iter().position(|n| *n == node).unwrap();
        let h = self.hosts.get(node);
        let mut w = h.command(Path::new(cistern_bin()));
        w.args(["worker", "--index", &index.to_string(), "--listen", &format!("{}:{WORKER_PORT}", h.ip), "--master", &self.master_addr, "-f"]).arg(&self.file);
        w.arg("--run-dir").arg(self.s.path(&format!("run/{node}"))).arg("--credentials").arg(self.s.path("run/srv/credentials"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.s.path(&format!("worker-{node}.log"))).unwrap();
        w.env("CISTERN_LOG", "info").stdout(Stdio::null()).stderr(log);
        self.workers.insert(node.to_string(), Proc(w.spawn().unwrap()));
    }

    fn status(&self) -> serde_json::Value {
        let got = std::panic::catch_unwind(|| http("GET", &format!("{}/api/v1/status", self.web)));
        got.ok().filter(|(code, _)| *code == 200).and_then(|(_, body)| serde_json::from_str(&body).ok()).unwrap_or_default()
    }

    fn metrics(&self) -> String {
        http("GET", &format!("{}/metrics", self.web)).1
    }

    /// A figure summed by the master over every worker it heard from.
    fn figure(&self, prefix: &str) -> u64 {
        metric(&self.metrics(), prefix).unwrap_or(0)
    }

    fn mount(&self, node: &str) -> &Path {
        &self.fuse[node].mountpoint
    }
}

fn read_checked(path: &Path, expected: &[u8]) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(got == expected, "{}: {} bytes read, {} expected, or different bytes", path.display(), got.len(), expected.len());
}

fn dataset(prefix: &str, n: usize, len: usize) -> BTreeMap<String, Vec<u8>> {
    (0..n).map(|i| (format!("{prefix}/part-{i:03}.bin"), tree::bytes(i as u64 * 7919 + prefix.len() as u64, len + i * 4099))).collect()
}

/// Reads `files` through `mount` in 1 MiB reads, in a loop until `stop`, checking every byte;
/// returns the longest single read.
fn reader(mount: PathBuf, files: Vec<(String, Vec<u8>)>, stop: Arc<AtomicBool>, errors: Arc<Mutex<Vec<String>>>) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut worst = Duration::ZERO;
        let mut buf = vec![0u8; 1 << 20];
        while !stop.load(Ordering::Relaxed) {
            for (rel, expected) in &files {
                let path = mount.join(rel);
                let mut f = match std::fs::File::open(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        errors.lock().unwrap().push(format!("open {}: {e}", path.display()));
                        continue;
                    }
                };
                let mut at = 0usize;
                loop {
                    let t = Instant::now();
                    let n = match f.read(&mut buf) {
                        Ok(n) => n,
                        Err(e) => {
                            errors.lock().unwrap().push(format!("read {} at {at}: {e}", path.display()));
                            break;
                        }
                    };
                    worst = worst.max(t.elapsed());
                    if n == 0 {
                        break;
                    }
                    if expected.get(at..at + n) != Some(&buf[..n]) {
                        errors.lock().unwrap().push(format!("{}: wrong bytes at {at}", path.display()));
                        break;
                    }
                    at += n;
                }
                if at != expected.len() && errors.lock().unwrap().is_empty() {
                    errors.lock().unwrap().push(format!("{}: {at} bytes, {} expected", path.display(), expected.len()));
                }
            }
        }
        worst
    })
}

#[test]
fn four_clients_on_four_nodes_cost_one_egress_and_ride_out_a_lost_worker() {
    let mut files = dataset("cold", 40, 1 << 20);
    files.extend(dataset("kill", 12, 2 << 20));
    files.extend(dataset("cut", 12, 2 << 20));
    files.extend(dataset("fresh", 24, 1 << 20));
    let total = |prefix: &str| files.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v.len() as u64).sum::<u64>();
    let (cold_bytes, kill_bytes) = (total("cold/"), total("kill/"));
    let mut nodes = start(files.clone(), "  replicas: 3\n");

    // 1. Four clients read the same data cold, at once: each byte leaves the store about once.
    let cold: Vec<(String, Vec<u8>)> = nodes.files.iter().filter(|(k, _)| k.starts_with("cold/")).map(|(k, v)| (k.clone(), v.clone())).collect();
    std::thread::scope(|scope| {
        for (i, node) in ["n1", "n2", "n3", "n4"].iter().enumerate() {
            let mount = nodes.mount(node).to_path_buf();
            let mut order = cold.clone();
            order.rotate_left(i * 3);
            scope.spawn(move || {
                for (rel, expected) in &order {
                    read_checked(&mount.join(rel), expected);
                }
            });
        }
    });
    let fetched = nodes.figure("cistern_ufs_fetched_bytes_total{");
    let egress = fetched as f64 / cold_bytes as f64;
    let remote = nodes.figure("cistern_read_bytes_total{namespace=\"default\",dataset=\"nodes\",source=\"remote\"}");
    let local = nodes.figure("cistern_read_bytes_total{namespace=\"default\",dataset=\"nodes\",source=\"local\"}");
    eprintln!("4 clients × {cold_bytes} bytes cold: {fetched} bytes from the UFS ({egress:.3}× the data); cache hits local {local}, remote {remote}");
    assert!(egress <= 1.1, "the store sent {egress:.3}× the data for four readers on four nodes");
    assert!(remote > 0, "no hit counted as remote although n4 has no worker:\n{}", nodes.metrics());
    let cache = &nodes.status()["dataset"]["status"]["cacheStates"];
    assert_ne!(cache["remoteHitRatio"].as_str().unwrap_or("0.0%"), "0.0%", "{cache}");

    // 2. A worker SIGKILLed under readers on a node with no worker and on another worker's node.
    let kill: Vec<(String, Vec<u8>)> = nodes.files.iter().filter(|(k, _)| k.starts_with("kill/")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let (stop, errors) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
    let readers: Vec<_> = ["n4", "n1"].iter().map(|n| reader(nodes.mount(n).to_path_buf(), kill.clone(), stop.clone(), errors.clone())).collect();
    std::thread::sleep(Duration::from_millis(300));
    nodes.workers.get_mut("n2").unwrap().kill9();
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let stall = readers.into_iter().map(|r| r.join().unwrap()).max().unwrap();
    let errs = errors.lock().unwrap().clone();
    eprintln!("worker on n2 SIGKILLed under 2 readers of {kill_bytes} bytes: {} errors, longest read {stall:?}", errs.len());
    assert!(errs.is_empty(), "read errors after a worker was killed: {errs:?}");
    assert!(stall < Duration::from_secs(5), "a read stalled {stall:?} after a worker was killed");

    // 3. A worker's cable cut (no reset, silence) under a reader on a node with no worker.
    let cut: Vec<(String, Vec<u8>)> = nodes.files.iter().filter(|(k, _)| k.starts_with("cut/")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let (stop, errors) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
    let r = reader(nodes.mount("n4").to_path_buf(), cut.clone(), stop.clone(), errors.clone());
    std::thread::sleep(Duration::from_millis(300));
    nodes.hosts.get("n3").link(false);
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    let stall = r.join().unwrap();
    let errs = errors.lock().unwrap().clone();
    eprintln!("cable of n3 cut under a reader on n4: {} errors, longest read {stall:?}", errs.len());
    assert!(errs.is_empty(), "read errors after a worker's cable was cut: {errs:?}");
    assert!(stall < Duration::from_secs(6), "a read stalled {stall:?} after a worker's cable was cut");

    // 4. The cable back, and n2's worker restarted over its cache: their files go back to them,
    // and they still have them (their identities are kept with their caches): no refetch.
    nodes.hosts.get("n3").link(true);
    nodes.start_worker("n2");
    eventually(30, "three workers ready again", || (nodes.status()["runtime"]["status"]["workerNumberReady"].as_u64() == Some(3)).then_some(()));
    std::thread::sleep(Duration::from_secs(3)); // a client refresh
    let before = nodes.figure("cistern_ufs_fetched_bytes_total{");
    tree::drop_page_cache(nodes.mount("n4"));
    for (rel, expected) in &cold {
        read_checked(&nodes.mount("n4").join(rel), expected);
    }
    let refetched = nodes.figure("cistern_ufs_fetched_bytes_total{") - before;
    eprintln!("after the cable came back and the killed worker restarted: {refetched} bytes of {cold_bytes} refetched from the UFS");
    assert!(refetched <= cold_bytes / 20, "{refetched} of {cold_bytes} bytes were fetched again");

    // 5. Scale-out, 3 → 4 workers: the newcomer owns about a quarter of the files, and takes
    // them from their previous owners, not from the UFS.
    std::fs::write(&nodes.file, yaml(&nodes.endpoint, &nodes.s.path("meta"), &nodes.s.path("ssd"), "  replicas: 4\n")).unwrap();
    nodes.start_worker("n4");
    eventually(30, "four workers ready", || (nodes.status()["runtime"]["status"]["workerNumberReady"].as_u64() == Some(4)).then_some(()));
    std::thread::sleep(Duration::from_secs(3)); // a client refresh and a peer refresh
    let (before, moved_before) = (nodes.figure("cistern_ufs_fetched_bytes_total{"), nodes.figure("cistern_peer_fetched_bytes_total{"));
    tree::drop_page_cache(nodes.mount("n1"));
    for (rel, expected) in &cold {
        read_checked(&nodes.mount("n1").join(rel), expected);
    }
    let refetched = nodes.figure("cistern_ufs_fetched_bytes_total{") - before;
    let moved = nodes.figure("cistern_peer_fetched_bytes_total{") - moved_before;
    eprintln!(
        "3 → 4 workers: {:.1}% of the data moved to the newcomer from its peers, {:.1}% refetched from the UFS",
        100.0 * moved as f64 / cold_bytes as f64,
        100.0 * refetched as f64 / cold_bytes as f64
    );
    assert!(moved > 0, "the newcomer took nothing from its peers");
    assert!(refetched <= cold_bytes / 20, "{refetched} of {cold_bytes} bytes were fetched again after a scale-out");

    // 6. Scale-in, 4 → 3, with hand-off. New files are read with four workers (the newcomer
    // fetches its share from the UFS: nobody else has it); then the runtime goes back to three,
    // and the leaving worker, on SIGTERM, hands its files to their new owners before it exits.
    let fresh: Vec<(String, Vec<u8>)> = nodes.files.iter().filter(|(k, _)| k.starts_with("fresh/")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let fresh_bytes = total("fresh/");
    for (rel, expected) in &fresh {
        read_checked(&nodes.mount("n1").join(rel), expected);
    }
    std::fs::write(&nodes.file, yaml(&nodes.endpoint, &nodes.s.path("meta"), &nodes.s.path("ssd"), "  replicas: 3\n")).unwrap();
    eventually(40, "the master to follow replicas: 3", || (nodes.status()["runtime"]["status"]["desiredWorkerNumberScheduled"].as_u64() == Some(3)).then_some(()));
    let moved_before = nodes.figure("cistern_peer_fetched_bytes_total{");
    let mut leaving = nodes.workers.remove("n4").unwrap();
    let t = Instant::now();
    unsafe { libc::kill(leaving.pid() as i32, libc::SIGTERM) };
    eventually(40, "the leaving worker to exit", || leaving.0.try_wait().ok().flatten());
    let took = t.elapsed();
    eventually(30, "three workers ready", || (nodes.status()["runtime"]["status"]["workerNumberReady"].as_u64() == Some(3)).then_some(()));
    std::thread::sleep(Duration::from_secs(3)); // a client refresh
    let handed = nodes.figure("cistern_peer_fetched_bytes_total{") - moved_before;
    let before = nodes.figure("cistern_ufs_fetched_bytes_total{");
    tree::drop_page_cache(nodes.mount("n1"));
    for (rel, expected) in &fresh {
        read_checked(&nodes.mount("n1").join(rel), expected);
    }
    let refetched = nodes.figure("cistern_ufs_fetched_bytes_total{") - before;
    eprintln!(
        "4 → 3 workers with hand-off: {:.1}% of the data handed over in {took:?}, {:.1}% refetched from the UFS",
        100.0 * handed as f64 / fresh_bytes as f64,
        100.0 * refetched as f64 / fresh_bytes as f64
    );
    assert!(handed > 0, "the leaving worker handed nothing over");
    assert!(refetched <= fresh_bytes / 20, "{refetched} of {fresh_bytes} bytes were fetched again after a scale-in");
}

/// `spec.data.replicas: 2`: each file is kept on two workers, the second copy made from the
/// first (the UFS sends it once), clients read the copy on their node; losing a worker loses
/// no file from the cache.
#[test]
fn two_copies_of_each_file_come_from_one_egress_and_survive_a_lost_worker() {
    let files = dataset("rep", 12, 2 << 20);
    let bytes: u64 = files.values().map(|v| v.len() as u64).sum();
    let mut nodes = start(files.clone(), "  replicas: 3\n  data:\n    replicas: 2\n");
    let all: Vec<(String, Vec<u8>)> = files.into_iter().collect();
    std::thread::scope(|scope| {
        for node in ["n1", "n2", "n3"] {
            let (mount, all) = (nodes.mount(node).to_path_buf(), &all);
            scope.spawn(move || {
                for (rel, expected) in all {
                    read_checked(&mount.join(rel), expected);
                }
            });
        }
    });
    let fetched = nodes.figure("cistern_ufs_fetched_bytes_total{");
    let copied = nodes.figure("cistern_peer_fetched_bytes_total{");
    let cached = nodes.figure("cistern_cache_used_bytes{");
    eprintln!("2 copies, 3 readers on 3 nodes: {fetched} bytes from the UFS for {bytes} ({:.3}×), {copied} copied between workers, {cached} cached", fetched as f64 / bytes as f64);
    assert!(fetched as f64 <= bytes as f64 * 1.1, "the store sent {fetched} bytes for {bytes}");
    assert!(copied > 0, "no copy was made from a peer");
    assert!(cached as f64 >= bytes as f64 * 1.5, "{cached} bytes cached: not two copies of {bytes}");

    // A worker lost: every file still has a copy on a live worker.
    nodes.workers.get_mut("n2").unwrap().kill9();
    eventually(30, "two workers ready", || (nodes.status()["runtime"]["status"]["workerNumberReady"].as_u64() == Some(2)).then_some(()));
    std::thread::sleep(Duration::from_secs(3));
    let before = nodes.figure("cistern_ufs_fetched_bytes_total{");
    for node in ["n1", "n3"] {
        tree::drop_page_cache(nodes.mount(node));
        for (rel, expected) in &all {
            read_checked(&nodes.mount(node).join(rel), expected);
        }
    }
    let refetched = nodes.figure("cistern_ufs_fetched_bytes_total{") - before;
    eprintln!("after losing one of 3 workers with 2 copies: {refetched} of {bytes} bytes refetched from the UFS");
    assert!(refetched <= bytes / 20, "{refetched} of {bytes} bytes were fetched again");
}
