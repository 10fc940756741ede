//! Warm reads of a fully cached file through the mount, against reading the same cache file
//! directly, with the kernel's page cache dropped (`echo 3 > /proc/sys/vm/drop_caches`)
//! before every run, so that the cache tier is measured and not the page cache.
//!
//! For a MEM tier (tmpfs: dropping caches cannot evict it) and an SSD tier (a directory on
//! disk), it prints: direct read of the cache file, read through the mount with FUSE
//! passthrough (the default), and through the mount with `CISTERN_NO_PASSTHROUGH=1` (every
//! read goes daemon → worker → cache file), each with its ratio to the direct read.
//!
//! `cargo bench -p cistern-cli --bench passthrough` (or `bench/passthrough.sh`; root).
//! `CISTERN_BENCH_MIB` sets the file size (default 1024).

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use support::*;

const MIB: u64 = 1 << 20;
const RUNS: usize = 3;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks; nothing to list
    }
    let mib: u64 = std::env::var("CISTERN_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let size = mib * MIB;
    let s = Scratch::new();
    let data = s.path("data");
    std::fs::create_dir_all(&data).unwrap();
    write_file(&data.join("big.bin"), size);

    let shm = tempfile::Builder::new().prefix("cistern-bench-").tempdir_in("/dev/shm").unwrap();
    let ssd = s.path("ssd");
    println!("warm sequential read of a fully cached {mib} MiB file, 1 MiB reads, best of {RUNS}, page cache dropped before each");
    for (medium, tier) in [("MEM", shm.path().to_path_buf()), ("SSD", ssd)] {
        let yaml = tier_yaml(&data, medium, &tier, mib * 2);
        let file = s.write(&format!("{medium}.yaml"), &yaml);
        let mut rows = Vec::new();
        for passthrough in [true, false] {
            // SAFETY: set before `up` starts, while this process runs no other thread that reads it.
            unsafe { std::env::set_var("CISTERN_NO_PASSTHROUGH", if passthrough { "0" } else { "1" }) };
            let up = Up::start(&s, &file, &[], "default", "bench");
            let target = up.mountpoint.join("big.bin");
            read_through(&target, size); // cold: fills the cache
            let cache_file = eventually(30, "the cache file complete", || {
                let f = tree::largest_file(&tier);
                (std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0) == size).then_some(f)
            });
            if passthrough {
                rows.push(("reading the cache file directly", best(|| read_through(&cache_file, size))));
                rows.push(("through the mount, passthrough", best(|| read_through(&target, size))));
            } else {
                rows.push(("through the mount, no passthrough", best(|| read_through(&target, size))));
            }
            drop(up);
            let _ = std::fs::remove_dir_all(&tier);
        }
        let direct = rows[0].1;
        for (what, rate) in rows {
            println!("{medium:>4} tier: {what:<36} {rate:>7.0} MiB/s  (ratio to direct {:.2})", rate / direct);
        }
    }
}

fn tier_yaml(data: &Path, medium: &str, tier: &Path, quota_mib: u64) -> String {
    let spec = format!(
        "  replicas: 1
  tieredstore:
    levels:
      - mediumtype: {medium}
        path: {}
        quota: {quota_mib}Mi
        high: \"0.99\"
        low: \"0.95\"
",
        tier.display()
    );
    dataset_with_runtime("bench", &format!("local://{}", data.display()), "", "JindoRuntime", &spec)
}

fn write_file(path: &Path, size: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let block: Vec<u8> = (0..MIB).map(|i| (i * 7 % 251) as u8).collect();
    for _ in 0..size / MIB {
        f.write_all(&block).unwrap();
    }
    f.write_all(&block[..(size % MIB) as usize]).unwrap();
}

fn best(mut f: impl FnMut() -> f64) -> f64 {
    (0..RUNS).map(|_| f()).fold(0.0, f64::max)
}

/// Drops every clean page the kernel caches, so the next read comes from the tier itself.
fn drop_caches() {
    // SAFETY: sync(2) takes no arguments.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("echo 3 > /proc/sys/vm/drop_caches (needs root)");
}

/// Reads a file from start to end in 1 MiB reads after dropping caches; MiB/s.
fn read_through(path: &Path, expect: u64) -> f64 {
    drop_caches();
    tree::sequential_read_mib_s(path, expect)
}
