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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::nodes::{Cistern, Lan};
use support::s3;
use support::*;

const WORKERS: [&str; 3] = ["n1", "n2", "n3"];
const CLIENTS: [&str; 4] = ["n1", "n2", "n3", "n4"];

fn read_checked(path: &Path, expected: &[u8]) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(got == expected, "{}: {} bytes read, {} expected, or different bytes", path.display(), got.len(), expected.len());
}

fn dataset(prefix: &str, n: usize, len: usize) -> BTreeMap<String, Vec<u8>> {
    (0..n).map(|i| (format!("{prefix}/part-{i:03}.bin"), tree::bytes(i as u64 * 7919 + prefix.len() as u64, len + i * 4099))).collect()
}

/// Reads `files` through `mount` in 1 MiB reads, in a loop until `stop`, checking every byte
/// (each pass past the page cache); returns the longest single read.
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
                // Out of the page cache, so that every pass reads through the workers.
                unsafe { libc::posix_fadvise(std::os::fd::AsRawFd::as_raw_fd(&f), 0, 0, libc::POSIX_FADV_DONTNEED) };
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
    let lan = Lan::up(&CLIENTS, None);
    s3::upload_to(&lan.store, "nodes", &files);
    let mut nodes = Cistern::start(&lan, "nodes", "1Gi", "  replicas: 3\n", &WORKERS, &CLIENTS);

    // 1. Four clients read the same data cold, at once: each byte leaves the store about once.
    let cold: Vec<(String, Vec<u8>)> = files.iter().filter(|(k, _)| k.starts_with("cold/")).map(|(k, v)| (k.clone(), v.clone())).collect();
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
    let remote = nodes.figure("cistern_read_bytes_total{dataset_namespace=\"default\",dataset=\"nodes\",source=\"remote\"}");
    let local = nodes.figure("cistern_read_bytes_total{dataset_namespace=\"default\",dataset=\"nodes\",source=\"local\"}");
    eprintln!("4 clients × {cold_bytes} bytes cold: {fetched} bytes from the UFS ({egress:.3}× the data); cache hits local {local}, remote {remote}");
    assert!(egress <= 1.1, "the store sent {egress:.3}× the data for four readers on four nodes");
    assert!(remote > 0, "no hit counted as remote although n4 has no worker:\n{}", nodes.metrics());
    let cache = &nodes.status()["dataset"]["status"]["cacheStates"];
    assert_ne!(cache["remoteHitRatio"].as_str().unwrap_or("0.0%"), "0.0%", "{cache}");

    // 2. A worker SIGKILLed under readers on a node with no worker and on another worker's node.
    let kill: Vec<(String, Vec<u8>)> = files.iter().filter(|(k, _)| k.starts_with("kill/")).map(|(k, v)| (k.clone(), v.clone())).collect();
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
    let cut: Vec<(String, Vec<u8>)> = files.iter().filter(|(k, _)| k.starts_with("cut/")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let (stop, errors) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
    let r = reader(nodes.mount("n4").to_path_buf(), cut.clone(), stop.clone(), errors.clone());
    std::thread::sleep(Duration::from_millis(300));
    lan.hosts.get("n3").link(false);
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    let stall = r.join().unwrap();
    let errs = errors.lock().unwrap().clone();
    eprintln!("cable of n3 cut under a reader on n4: {} errors, longest read {stall:?}", errs.len());
    assert!(errs.is_empty(), "read errors after a worker's cable was cut: {errs:?}");
    assert!(stall < Duration::from_secs(4), "a read stalled {stall:?} after a worker's cable was cut (target 2 s)");

    // 4. The cable back, and n2's worker restarted over its cache: their files go back to them,
    // and they still have them (their identities are kept with their caches): no refetch.
    lan.hosts.get("n3").link(true);
    nodes.start_worker("n2");
    nodes.wait_workers(3);
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
    nodes.rewrite("  replicas: 4\n");
    nodes.start_worker("n4");
    nodes.wait_workers(4);
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
    let fresh: Vec<(String, Vec<u8>)> = files.iter().filter(|(k, _)| k.starts_with("fresh/")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let fresh_bytes = total("fresh/");
    for (rel, expected) in &fresh {
        read_checked(&nodes.mount("n1").join(rel), expected);
    }
    nodes.rewrite("  replicas: 3\n");
    eventually(40, "the master to follow replicas: 3", || (nodes.status()["runtime"]["status"]["desiredWorkerNumberScheduled"].as_u64() == Some(3)).then_some(()));
    let moved_before = nodes.figure("cistern_peer_fetched_bytes_total{");
    let took = nodes.terminate_worker("n4");
    nodes.wait_workers(3);
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
    let lan = Lan::up(&WORKERS, None);
    s3::upload_to(&lan.store, "nodes", &files);
    let mut nodes = Cistern::start(&lan, "nodes", "1Gi", "  replicas: 3\n  data:\n    replicas: 2\n", &WORKERS, &WORKERS);
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
    if std::env::var("CISTERN_WORKER_LOG").is_ok() {
        for n in WORKERS {
            let log = std::fs::read_to_string(nodes.s.path(&format!("worker-{n}.log"))).unwrap_or_default();
            for l in log.lines().take(400) {
                eprintln!("{n}: {l}");
            }
        }
    }
    assert!(fetched as f64 <= bytes as f64 * 1.1, "the store sent {fetched} bytes for {bytes}");
    assert!(copied > 0, "no copy was made from a peer");
    assert!(cached as f64 >= bytes as f64 * 1.5, "{cached} bytes cached: not two copies of {bytes}");

    // A worker lost: every file still has a copy on a live worker.
    nodes.workers.get_mut("n2").unwrap().kill9();
    nodes.wait_workers(2);
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
