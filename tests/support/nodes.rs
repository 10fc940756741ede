//! Cistern on several hosts (network namespaces, `support::hosts`): a LAN with the S3 server
//! on host `srv` (optionally far: each connection rate-limited and every byte delayed by a
//! proxy), and a Dataset whose master runs on `srv`, its workers and FUSE clients on the hosts
//! named. Every component is started by hand as on its own machine (`cistern master|worker|fuse`
//! with `--listen` / `--master`, its own `NODE_NAME` and run directory), talking mutual TLS
//! over TCP. Used by `tests/across_nodes.rs` and the multi-node benchmark.

use super::delay::DelayProxy;
use super::hosts::{Hosts, Proc};
use super::s3::{self, S3Server, ACCESS_KEY, BUCKET, SECRET_KEY};
use super::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MASTER_PORT: u16 = 7000;
const WEB_PORT: u16 = 7001;
const WORKER_PORT: u16 = 7100;
const PROXY_PORT: u16 = 7200;

/// A far object store: what each connection gets, and the delay each way.
#[derive(Debug, Clone, Copy)]
pub struct Far {
    pub mib_per_connection: u64,
    pub one_way: Duration,
}

/// One LAN at a time per test binary: each runs an S3 server and several components on a
/// machine of two cores.
static SERIAL: Mutex<()> = Mutex::new(());

pub struct Lan {
    pub hosts: Hosts,
    pub store: S3Server,
    /// The S3 endpoint clients use: the delay proxy's when far, else the server's.
    pub endpoint: String,
    proxy: Option<DelayProxy>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Its S3 server goes with it: a second server of this binary on another LAN was seen
        // handing out the first one's volume address (SeaweedFS, `weed mini`).
        unsafe { libc::kill(self.store.pid as i32, libc::SIGKILL) };
    }
}

impl Lan {
    /// `srv` and the hosts named, the S3 server on `srv`.
    pub fn up(names: &[&str], far: Option<Far>) -> Lan {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = vec!["srv"];
        all.extend_from_slice(names);
        let hosts = Hosts::up(&all).expect("network namespaces (needs root and iproute2)");
        let srv = hosts.get("srv");
        let store = s3::server_in(&srv.ns, &srv.ip);
        let proxy = far.map(|far| {
            super::far::limit_each_connection(&srv.ns, "eth0", far.mib_per_connection).expect("tc on the server's host");
            let upstream = store.endpoint.trim_start_matches("http://").to_string();
            DelayProxy::start(Some(&srv.ns), &format!("{}:{PROXY_PORT}", srv.ip), &upstream, far.one_way)
        });
        let endpoint = proxy.as_ref().map_or(store.endpoint.clone(), |p| format!("http://{}", p.address));
        Lan { hosts, store, endpoint, proxy, _serial: serial }
    }

    /// Bytes the far store sent so far (through its proxy); `None` when not far.
    pub fn egress(&self) -> Option<u64> {
        self.proxy.as_ref().map(|p| p.egress.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// The Dataset on `s3://BUCKET/<prefix>`; `runtime`: the AlluxioRuntime spec's lines after
/// `spec:` other than its master and tieredstore (e.g. `  replicas: 3\n`).
pub fn yaml(endpoint: &str, prefix: &str, meta: &Path, ssd: &Path, quota: &str, runtime: &str) -> String {
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
    - mountPoint: s3://{BUCKET}/{prefix}
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
        quota: {quota}
",
        meta = meta.display(),
        ssd = ssd.display()
    )
}

/// A FUSE client: SIGTERM (an orderly unmount) when dropped, then SIGKILL and a lazy unmount.
pub struct Fuse {
    proc: Proc,
    pub mountpoint: PathBuf,
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

/// One Dataset across the LAN's hosts.
pub struct Cistern<'a> {
    // Dropped first to last: clients, workers, master.
    pub fuse: BTreeMap<String, Fuse>,
    pub workers: BTreeMap<String, Proc>,
    _master: Proc,
    pub lan: &'a Lan,
    pub s: Scratch,
    web: String,
    master_addr: String,
    pub file: PathBuf,
    prefix: String,
    quota: String,
    /// Worker ordinals by host, in the order they were first started.
    ordinals: Vec<String>,
}

impl<'a> Cistern<'a> {
    /// The master on `srv`, a worker on each of `workers` (ordinals in that order), a FUSE
    /// client on each of `clients`; the Dataset is `prefix/` of the bucket.
    pub fn start(lan: &'a Lan, prefix: &str, quota: &str, runtime: &str, workers: &[&str], clients: &[&str]) -> Cistern<'a> {
        let s = Scratch::new();
        let file = s.write("nodes.yaml", &yaml(&lan.endpoint, prefix, &s.path("meta"), &s.path("ssd"), quota, runtime));
        let srv = lan.hosts.get("srv");
        let creds = s.path("run/srv/credentials");
        let master_addr = format!("{}:{MASTER_PORT}", srv.ip);
        let mut master = srv.command(Path::new(cistern_bin()));
        master.args(["master", "--listen", &master_addr, "--web-addr", &format!("{}:{WEB_PORT}", srv.ip), "-f"]).arg(&file);
        master.arg("--run-dir").arg(s.path("run/srv")).env("CISTERN_LOG", "info").stdout(Stdio::null());
        master.stderr(std::fs::File::create(s.path("master.log")).unwrap());
        let master = Proc(master.spawn().unwrap());
        eventually(30, "the master's credentials", || creds.join("ca.pem").exists().then_some(()));
        let web = format!("http://{}:{WEB_PORT}", srv.ip);
        let mut c = Cistern {
            fuse: BTreeMap::new(),
            workers: BTreeMap::new(),
            _master: master,
            lan,
            s,
            web,
            master_addr,
            file,
            prefix: prefix.to_string(),
            quota: quota.to_string(),
            ordinals: Vec::new(),
        };
        for node in workers {
            c.start_worker(node);
        }
        c.wait_workers(workers.len() as u64);
        for node in clients {
            c.start_fuse(node);
        }
        for (node, f) in &c.fuse {
            eventually(60, &format!("the mount on {node}"), || is_mounted(&f.mountpoint).then_some(()));
        }
        c
    }

    /// The runtime spec rewritten (the master follows within 10 s).
    pub fn rewrite(&self, runtime: &str) {
        std::fs::write(&self.file, yaml(&self.lan.endpoint, &self.prefix, &self.s.path("meta"), &self.s.path("ssd"), &self.quota, runtime)).unwrap();
    }

    /// The worker of `node`, over the cache it had if any (its ordinal is kept).
    pub fn start_worker(&mut self, node: &str) {
        let index = match self.ordinals.iter().position(|n| n == node) {
            Some(i) => i,
            None => {
                self.ordinals.push(node.to_string());
                self.ordinals.len() - 1
            }
        };
        let h = self.lan.hosts.get(node);
        let mut w = h.command(Path::new(cistern_bin()));
        w.args(["worker", "--index", &index.to_string(), "--listen", &format!("{}:{WORKER_PORT}", h.ip), "--master", &self.master_addr, "-f"]).arg(&self.file);
        w.arg("--run-dir").arg(self.s.path(&format!("run/{node}"))).arg("--credentials").arg(self.s.path("run/srv/credentials"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.s.path(&format!("worker-{node}.log"))).unwrap();
        w.env("CISTERN_LOG", std::env::var("CISTERN_WORKER_LOG").unwrap_or("info".into())).stdout(Stdio::null()).stderr(log);
        self.workers.insert(node.to_string(), Proc(w.spawn().unwrap()));
    }

    fn start_fuse(&mut self, node: &str) {
        let h = self.lan.hosts.get(node);
        let mountpoint = self.s.path(&format!("mnt/{node}"));
        let mut f = h.command(Path::new(cistern_bin()));
        f.args(["fuse", "--master", &self.master_addr, "-f"]).arg(&self.file).arg("--mountpoint").arg(&mountpoint);
        f.arg("--run-dir").arg(self.s.path(&format!("run/{node}"))).arg("--credentials").arg(self.s.path("run/srv/credentials"));
        f.env("CISTERN_LOG", "info").stdout(Stdio::null()).stderr(std::fs::File::create(self.s.path(&format!("fuse-{node}.log"))).unwrap());
        let proc = Proc(f.spawn().unwrap());
        self.fuse.insert(node.to_string(), Fuse { proc, mountpoint });
    }

    /// Waits until the master counts `n` workers ready.
    pub fn wait_workers(&self, n: u64) {
        eventually(60, &format!("{n} workers ready"), || (self.status()["runtime"]["status"]["workerNumberReady"].as_u64() == Some(n)).then_some(()));
    }

    pub fn status(&self) -> serde_json::Value {
        let got = std::panic::catch_unwind(|| http("GET", &format!("{}/api/v1/status", self.web)));
        got.ok().filter(|(code, _)| *code == 200).and_then(|(_, body)| serde_json::from_str(&body).ok()).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        http("GET", &format!("{}/metrics", self.web)).1
    }

    /// A figure summed by the master over every worker it heard from.
    pub fn figure(&self, prefix: &str) -> u64 {
        metric(&self.metrics(), prefix).unwrap_or(0)
    }

    pub fn mount(&self, node: &str) -> &Path {
        &self.fuse[node].mountpoint
    }

    /// SIGTERM to `node`'s worker, and waits for it to exit; how long it took.
    pub fn terminate_worker(&mut self, node: &str) -> Duration {
        let mut w = self.workers.remove(node).expect("a worker on that node");
        let t = Instant::now();
        unsafe { libc::kill(w.pid() as i32, libc::SIGTERM) };
        eventually(40, "the worker to exit", || w.0.try_wait().ok().flatten());
        t.elapsed()
    }
}
