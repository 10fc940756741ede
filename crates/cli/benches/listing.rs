//! Listing and stat through the mount: one directory of 100 000 files on a local UFS, listed
//! cold (from the UFS into the master's store) and warm (from the store), then every entry
//! stat'ed; each figure next to the same operation on the source directory.
//! `cargo bench -p cistern-cli --bench listing`; `CISTERN_BENCH_ENTRIES` sets the count.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Instant;
use support::*;

fn list(dir: &Path) -> (usize, f64) {
    let t = Instant::now();
    let n = std::fs::read_dir(dir).unwrap().count();
    (n, t.elapsed().as_secs_f64())
}

fn stat_all(dir: &Path, names: &[String]) -> f64 {
    let t = Instant::now();
    for n in names {
        std::fs::symlink_metadata(dir.join(n)).unwrap();
    }
    names.len() as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let entries: usize = std::env::var("CISTERN_BENCH_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let s = Scratch::new();
    let ufs = s.path("ufs");
    let big = ufs.join("big");
    std::fs::create_dir_all(&big).unwrap();
    eprintln!("creating {entries} files ...");
    let names: Vec<String> = (0..entries).map(|i| format!("sample-{i:07}.jpg")).collect();
    for n in &names {
        std::fs::write(big.join(n), b"x").unwrap();
    }
    let yaml = dataset_yaml("ls", &format!("local://{}", ufs.display()), "", &s.path("cache"), "64Mi", 1);
    let file = s.write("ls.yaml", &yaml);
    let up = Up::start(&s, &file, &[], "default", "ls");
    let mnt = up.mountpoint.join("big");

    let (n_src, src_secs) = list(&big);
    let (n_cold, cold_secs) = list(&mnt);
    let (n_warm, warm_secs) = list(&mnt);
    assert_eq!((n_cold, n_warm), (n_src, n_src));
    println!("list {entries} entries: cold (UFS → store) {cold_secs:.2}s, warm (store) {warm_secs:.2}s through the mount vs {src_secs:.2}s on the source directory (ratio warm/source {:.1})", warm_secs / src_secs);
    let src_rate = stat_all(&big, &names);
    let mnt_rate = stat_all(&mnt, &names);
    println!("stat every entry: {mnt_rate:.0}/s through the mount vs {src_rate:.0}/s on the source directory (ratio {:.2})", mnt_rate / src_rate);
    drop(up);
}
