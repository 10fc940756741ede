//! Harness for the end-to-end tests: runs the real `cistern` binary, waits for its real FUSE
//! mount, and runs a real S3 server (SeaweedFS, `weed mini`) on 127.0.0.1.
#![allow(dead_code)]

pub mod browser;
pub mod cluster;
pub mod delay;
pub mod far;
pub mod hosts;
pub mod nodes;
pub mod s3;
pub mod tree;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub fn cistern_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cistern")
}

/// A scratch area for one test: a mount root, a run root and room for data and cache.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::Builder::new().prefix("cistern-e2e-").tempdir().unwrap() }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn mount_root(&self) -> PathBuf {
        self.path("mnt")
    }
    pub fn run_root(&self) -> PathBuf {
        self.path("run")
    }
    /// `cistern <args>` with this scratch's run root, to completion.
    pub fn cistern(&self, args: &[&str]) -> Output {
        Command::new(cistern_bin()).args(args).env("CISTERN_RUN_ROOT", self.run_root()).output().unwrap()
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// A running `cistern up`. Dropping it stops it (SIGTERM) and removes any mount left over.
pub struct Up {
    pub child: Option<Child>,
    pub mountpoint: PathBuf,
    /// Where `up` writes the PIDs, sockets and status.
    pub run_dir: PathBuf,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Up {
    /// Starts `cistern up -f file` and waits until the dataset is mounted.
    pub fn start(scratch: &Scratch, file: &Path, extra: &[&str], namespace: &str, name: &str) -> Up {
        let mountpoint = scratch.mount_root().join(namespace).join(name);
        let stdout_path = scratch.path(&format!("up-{name}.out"));
        let stderr_path = scratch.path(&format!("up-{name}.err"));
        let child = Command::new(cistern_bin())
            .arg("up")
            .arg("-f")
            .arg(file)
            .arg("--mount-root")
            .arg(scratch.mount_root())
            .args(extra)
            .env("CISTERN_RUN_ROOT", scratch.run_root())
            .env("CISTERN_LOG", "info")
            .env("CISTERN_WEB_ADDR", "127.0.0.1:0")
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let run_dir = scratch.run_root().join(format!("{namespace}-{name}"));
        let mut up = Up { child: Some(child), mountpoint, run_dir, stdout_path, stderr_path };
        let deadline = Instant::now() + Duration::from_secs(60);
        // A live mount: a dead one left by a killed run is mounted too, but cannot be read.
        while !(is_mounted(&up.mountpoint) && std::fs::read_dir(&up.mountpoint).is_ok()) {
            if let Some(status) = up.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("cistern up exited ({status}) before mounting:\n{}", up.stderr());
            }
            assert!(Instant::now() < deadline, "not mounted after 60s:\n{}", up.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
        up
    }

    /// The web port's base URL, from the status file `up` publishes.
    pub fn web_url(scratch: &Scratch, namespace: &str, name: &str) -> String {
        let status = scratch.run_root().join(format!("{namespace}-{name}")).join("status.json");
        eventually(20, "the web URL in status.json", || {
            let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&status).ok()?).ok()?;
            json["web"].as_str().map(str::to_string)
        })
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// The PID of a component (`master`, `worker-0`, `fuse`) from its pid file.
    pub fn pid(&self, component: &str) -> u32 {
        let path = self.run_dir.join(format!("{component}.pid"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.trim().parse().unwrap_or_else(|e| panic!("{}: {e}: {text:?}", path.display()))
    }

    /// SIGKILLs a component and waits until `up` has started a new one (a new PID that runs).
    pub fn kill9_component(&self, component: &str) -> u32 {
        let old = self.pid(component);
        // SAFETY: kill(2) of a process we started (through `up`).
        assert_eq!(unsafe { libc::kill(old as i32, libc::SIGKILL) }, 0, "kill {component} ({old})");
        eventually(30, &format!("{component} restarted"), || {
            let new = std::fs::read_to_string(self.run_dir.join(format!("{component}.pid"))).ok()?.trim().parse::<u32>().ok()?;
            (new != old && Path::new(&format!("/proc/{new}")).exists()).then_some(new)
        })
    }

    /// SIGKILL, as the OOM killer or a node failure would; the FUSE mount is left dead.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("already stopped");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("already stopped");
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("cistern up did not exit within 30s of SIGTERM:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate();
        }
        if is_mounted(&self.mountpoint) {
            let _ = Command::new("umount").arg("-l").arg(&self.mountpoint).status();
        }
    }
}

/// The whole content of a file, read through one descriptor.
pub fn read_all(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::open(path).unwrap(), &mut out).unwrap();
    out
}

pub fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = path.to_string_lossy().replace(' ', "\\040");
    info.lines().any(|l| l.split(' ').nth(4) == Some(&want))
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A Dataset with one mount at the root, then a runtime of `kind` with this `spec` body
/// (indented by two spaces, ending in a newline).
pub fn dataset_with_runtime(name: &str, mount_point: &str, mount_extra: &str, kind: &str, runtime_spec: &str) -> String {
    format!(
        "apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata:
  name: {name}
spec:
  mounts:
    - mountPoint: {mount_point}
      name: data
      path: /
{mount_extra}---
apiVersion: data.fluid.io/v1alpha1
kind: {kind}
metadata:
  name: {name}
spec:
{runtime_spec}"
    )
}

/// A JindoRuntime spec body: one replica, its metadata in `meta` (namespace.meta-dir, as in
/// the seeds) and one 1Gi SSD level at `ssd`.
pub fn persistent_jindo_spec(meta: &Path, ssd: &Path) -> String {
    format!(
        "  replicas: 1
  master:
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

/// A YAML Dataset + JindoRuntime pair around one mount, with one MEM level.
pub fn dataset_yaml(name: &str, mount_point: &str, mount_extra: &str, tier_path: &Path, quota: &str, replicas: u32) -> String {
    let spec = format!(
        "  replicas: {replicas}
  tieredstore:
    levels:
      - mediumtype: MEM
        path: {tier}
        quota: {quota}
        high: \"0.99\"
        low: \"0.95\"
",
        tier = tier_path.display()
    );
    dataset_with_runtime(name, mount_point, mount_extra, "JindoRuntime", &spec)
}

/// One HTTP/1.1 request to 127.0.0.1 (`url` like `http://127.0.0.1:PORT/path`): status and body.
pub fn http(method: &str, url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(conn, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    (code, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// The value of one Prometheus sample whose line starts with `prefix` (name and labels).
pub fn metric(text: &str, prefix: &str) -> Option<u64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

/// A `cistern master -f FILE` process serving its web port on a free port of 127.0.0.1
/// (killed when dropped).
pub struct MasterProcess {
    child: Child,
    pub web_port: u16,
}

impl MasterProcess {
    pub fn start(scratch: &Scratch, file: &Path) -> MasterProcess {
        let web_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(cistern_bin())
            .args(["master", "--web-addr", &format!("127.0.0.1:{web_port}")])
            .arg("-f")
            .arg(file)
            .arg("--run-dir")
            .arg(scratch.path("run"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        MasterProcess { child, web_port }
    }
}

impl Drop for MasterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
